//! Greedy CTC decoding of the recogniser's per-timestep character probabilities.

/// The recogniser's alphabet: index 0 is the CTC blank, the last entry a space.
#[derive(Debug, Clone)]
pub struct Dictionary {
    chars: Vec<String>,
}

impl Dictionary {
    /// Builds the alphabet from the model's `character` metadata (one symbol per line).
    pub fn from_metadata(character: &str) -> Dictionary {
        let mut chars = vec![String::new()];
        chars.extend(
            character
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned()),
        );
        // A trailing newline would otherwise add an empty symbol that shifts nothing but
        // still wastes an index the model does not have.
        if chars.len() > 1 && chars.last().is_some_and(|c| c.is_empty()) {
            chars.pop();
        }
        chars.push(" ".to_owned());
        Dictionary { chars }
    }

    /// Symbols including blank and space.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.len() <= 1
    }

    /// Decodes one sequence of `steps` x `classes` probabilities: take the most likely class
    /// per step, collapse repeats, drop blanks. Confidence is the mean probability of the
    /// kept characters (0 when nothing is kept).
    pub fn decode(&self, probs: &[f32], steps: usize, classes: usize) -> (String, f32) {
        let mut text = String::new();
        let (mut sum, mut kept) = (0.0f32, 0u32);
        let mut prev = usize::MAX;
        for t in 0..steps {
            let row = &probs[t * classes..(t + 1) * classes];
            let (best, p) = row
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |acc, (i, v)| if v > acc.1 { (i, v) } else { acc },
                );
            if best != 0
                && best != prev
                && let Some(c) = self.chars.get(best)
            {
                text.push_str(c);
                sum += p;
                kept += 1;
            }
            prev = best;
        }
        let conf = if kept == 0 { 0.0 } else { sum / kept as f32 };
        (text, conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(seq: &[usize], classes: usize, p: f32) -> Vec<f32> {
        let mut v = vec![0.0f32; seq.len() * classes];
        for (t, &c) in seq.iter().enumerate() {
            v[t * classes + c] = p;
        }
        v
    }

    #[test]
    fn dictionary_adds_blank_and_space() {
        let d = Dictionary::from_metadata("a\nb\nc\n");
        assert_eq!(d.len(), 5);
        assert_eq!(d.chars[0], "");
        assert_eq!(d.chars[1], "a");
        assert_eq!(d.chars[4], " ");
    }

    #[test]
    fn collapses_repeats_and_blanks() {
        let d = Dictionary::from_metadata("3\n8\n4\n#");
        // "#", "#", blank, "3", "8", "8", blank, "8", "4", space
        let seq = [4, 4, 0, 1, 2, 2, 0, 2, 3, 5];
        let (text, conf) = d.decode(&one_hot(&seq, 6, 0.8), seq.len(), 6);
        assert_eq!(text, "#3884 ");
        assert!((conf - 0.8).abs() < 1e-6);
    }

    #[test]
    fn empty_sequence_has_zero_confidence() {
        let d = Dictionary::from_metadata("x");
        let (text, conf) = d.decode(&one_hot(&[0, 0, 0], 3, 0.9), 3, 3);
        assert_eq!(text, "");
        assert_eq!(conf, 0.0);
    }
}
