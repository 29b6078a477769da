//! `ListObjectsV2` without a delimiter, walking only what the page needs.
//!
//! `s3s-fs` answers every listing by walking and `stat`ing the whole bucket, then sorting
//! and cutting the page: a poll of a station's small index folder would cost as much as
//! all the frames ever stored. Here the walk starts at the folder the prefix names,
//! visits directories in key order (a directory sorts as its name followed by `/`, which
//! is where its keys fall among its siblings'), skips whole subtrees that lie at or
//! before the continuation point, and stops once the page is full: a page costs the
//! folders on its path and the keys it returns, whatever else the bucket holds.

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// One object of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// Up to `max` keys of `bucket_root` that start with `prefix` and sort after
/// `start_after`, in key order, and whether more follow.
pub(crate) fn page(
    bucket_root: &Path,
    prefix: &str,
    start_after: Option<&str>,
    max: usize,
) -> io::Result<(Vec<Entry>, bool)> {
    let mut walk = Walk {
        prefix,
        start_after,
        // One more than asked: whether it exists says whether the page is truncated.
        want: max.saturating_add(1),
        out: Vec::new(),
    };
    let (dir_key, dir) = match prefix.rfind('/') {
        Some(i) => (&prefix[..=i], bucket_root.join(&prefix[..i])),
        None => ("", bucket_root.to_owned()),
    };
    if dir.is_dir() {
        walk.visit(&dir, dir_key)?;
    }
    let more = walk.out.len() > max;
    walk.out.truncate(max);
    Ok((walk.out, more))
}

struct Walk<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
    want: usize,
    out: Vec<Entry>,
}

impl Walk<'_> {
    fn full(&self) -> bool {
        self.out.len() >= self.want
    }

    /// Visits `dir`, whose keys start with `dir_key` (empty or ending in `/`).
    fn visit(&mut self, dir: &Path, dir_key: &str) -> io::Result<()> {
        let mut children = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // A name that is not UTF-8 is no key s3s-fs could have written.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type()?.is_dir();
            let sort = if is_dir { format!("{name}/") } else { name };
            children.push((sort, is_dir, entry));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (sort, is_dir, entry) in children {
            if self.full() {
                break;
            }
            let key = format!("{dir_key}{sort}");
            if is_dir {
                let may_hold = key.starts_with(self.prefix) || self.prefix.starts_with(&key);
                // Every key below sorts before a continuation point that is past the
                // directory's name without starting with it.
                let passed = self
                    .start_after
                    .is_some_and(|s| s >= key.as_str() && !s.starts_with(&key));
                if may_hold && !passed {
                    self.visit(&entry.path(), &key)?;
                }
            } else if key.starts_with(self.prefix)
                && self.start_after.is_none_or(|s| key.as_str() > s)
            {
                let meta = entry.metadata()?;
                self.out.push(Entry {
                    key,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str, keys: &[&str]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("oa-listing-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for k in keys {
            let p = root.join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, k.as_bytes()).unwrap();
        }
        root
    }

    fn keys(root: &Path, prefix: &str, after: Option<&str>, max: usize) -> (Vec<String>, bool) {
        let (page, more) = page(root, prefix, after, max).unwrap();
        (page.into_iter().map(|e| e.key).collect(), more)
    }

    /// Every key in order, page by page, compared with a plain sort of all keys.
    #[test]
    fn pages_follow_key_order_across_folders() {
        let all = [
            "a-c",
            "a/b",
            "a/b0/x",
            "a.d",
            "a0",
            "b/__index__/1_begin_7",
            "b/__index__/2_marker_7",
            "b/7/frame_1.jpg",
            "b/7/__EOS__",
            "b/70/__EOS__",
        ];
        let root = tree("order", &all);
        let mut sorted: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        sorted.sort();
        for max in [1, 2, 3, 100] {
            let mut got = vec![];
            let mut after: Option<String> = None;
            loop {
                let (page, more) = keys(&root, "", after.as_deref(), max);
                assert!(page.len() <= max);
                after = page.last().cloned().or(after);
                got.extend(page);
                if !more {
                    break;
                }
            }
            assert_eq!(got, sorted, "pages of {max}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_prefix_lists_only_its_keys() {
        let root = tree(
            "prefix",
            &[
                "s1/__index__/1_m_7",
                "s1/__index__/2_m_8",
                "s1/7/__EOS__",
                "s10/9/__EOS__",
                "s1x",
            ],
        );
        assert_eq!(
            keys(&root, "s1/__index__/", None, 10),
            (
                vec!["s1/__index__/1_m_7".into(), "s1/__index__/2_m_8".into()],
                false
            )
        );
        assert_eq!(
            keys(&root, "s1/__index__/", None, 1),
            (vec!["s1/__index__/1_m_7".into()], true)
        );
        assert_eq!(
            keys(&root, "s1/__index__/", Some("s1/__index__/1_m_7"), 1),
            (vec!["s1/__index__/2_m_8".into()], false)
        );
        assert_eq!(
            keys(&root, "s1", None, 10).0,
            [
                "s1/7/__EOS__",
                "s1/__index__/1_m_7",
                "s1/__index__/2_m_8",
                "s10/9/__EOS__",
                "s1x"
            ]
        );
        assert_eq!(keys(&root, "nothing/here/", None, 10), (vec![], false));
        assert_eq!(keys(&root, "s1/", None, 0), (vec![], true));
        std::fs::remove_dir_all(root).unwrap();
    }
}
