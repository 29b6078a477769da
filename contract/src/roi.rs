//! The region of interest of `ocrsegment`, written `x,y,width,height` in whole pixels.
//!
//! One parser for the element's `roi` property and the orchestrator's configuration, so
//! that a configuration that passes `check-config` is one whose pipelines start.

use std::fmt;

/// Narrowest and lowest region, in pixels, that still holds readable text.
pub const MIN_ROI_SIDE: u32 = 8;

/// A rectangle of the frame, in pixels from its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Why a text is not a usable region; `Display` quotes the text and names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoiError {
    /// Nothing but white space (for the element, that means the whole frame).
    Empty,
    /// A part is not a whole number of pixels (`-1`, `1.5`, `a`).
    NotPixels { input: String },
    /// Not exactly four numbers.
    WrongCount { input: String, count: usize },
    /// Smaller than [`MIN_ROI_SIDE`] on a side.
    TooSmall {
        input: String,
        width: u32,
        height: u32,
    },
}

impl fmt::Display for RoiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoiError::Empty => write!(f, "is empty, expected \"x,y,width,height\""),
            RoiError::NotPixels { input } => {
                write!(f, "{input:?} is not \"x,y,width,height\" in whole pixels")
            }
            RoiError::WrongCount { input, count } => write!(
                f,
                "{input:?} has {count} numbers, expected \"x,y,width,height\""
            ),
            RoiError::TooSmall {
                input,
                width,
                height,
            } => write!(
                f,
                "{input:?} is {width}x{height}, at least {MIN_ROI_SIDE}x{MIN_ROI_SIDE} pixels are needed to read text"
            ),
        }
    }
}

impl std::error::Error for RoiError {}

impl Roi {
    /// Parses `x,y,width,height` (white space around the text and each number is allowed).
    pub fn parse(s: &str) -> Result<Roi, RoiError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(RoiError::Empty);
        }
        let nums: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| RoiError::NotPixels { input: s.into() })?;
        let [x, y, width, height] = nums[..] else {
            return Err(RoiError::WrongCount {
                input: s.into(),
                count: nums.len(),
            });
        };
        if width < MIN_ROI_SIDE || height < MIN_ROI_SIDE {
            return Err(RoiError::TooSmall {
                input: s.into(),
                width,
                height,
            });
        }
        Ok(Roi {
            x,
            y,
            width,
            height,
        })
    }

    /// As the element's `roi` property reads it: empty (or blank) is the whole frame.
    pub fn parse_optional(s: &str) -> Result<Option<Roi>, RoiError> {
        match Roi::parse(s) {
            Ok(roi) => Ok(Some(roi)),
            Err(RoiError::Empty) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the region lies inside a `width` x `height` frame (checked once the frame
    /// size is known, when caps are set).
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        u64::from(self.x) + u64::from(self.width) <= u64::from(width)
            && u64::from(self.y) + u64::from(self.height) <= u64::from(height)
    }
}

impl fmt::Display for Roi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.width, self.height)
    }
}

impl std::str::FromStr for Roi {
    type Err = RoiError;

    fn from_str(s: &str) -> Result<Roi, RoiError> {
        Roi::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let roi = Roi::parse(" 1, 2,30,40 ").unwrap();
        assert_eq!(
            roi,
            Roi {
                x: 1,
                y: 2,
                width: 30,
                height: 40
            }
        );
        assert_eq!(roi.to_string(), "1,2,30,40");
        assert_eq!(Roi::parse(&roi.to_string()), Ok(roi));
        assert_eq!("0,0,8,8".parse::<Roi>().unwrap().width, MIN_ROI_SIDE);
    }

    #[test]
    fn empty_is_the_whole_frame_only_where_optional() {
        assert_eq!(Roi::parse("  "), Err(RoiError::Empty));
        assert_eq!(Roi::parse_optional(""), Ok(None));
        assert_eq!(Roi::parse_optional(" "), Ok(None));
        assert!(Roi::parse_optional("0,0,10,10").unwrap().is_some());
        assert!(Roi::parse_optional("0,0,2,2").is_err());
    }

    #[test]
    fn refuses_what_the_element_refuses() {
        for (input, want) in [
            ("1,2,3", "has 3 numbers"),
            ("1,2,3,4,5", "has 5 numbers"),
            ("a,b,c,d", "in whole pixels"),
            ("-1,0,10,10", "in whole pixels"),
            ("0,0,10.5,10", "in whole pixels"),
            ("0,,10,10", "in whole pixels"),
            ("0,0,2,2", "at least 8x8"),
            ("0,0,4,4", "at least 8x8"),
            ("0,0,100,7", "at least 8x8"),
        ] {
            let e = Roi::parse(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(e.contains(&format!("{:?}", input.trim())), "{input}: {e}");
        }
    }

    #[test]
    fn fits_in_a_frame() {
        let roi = Roi::parse("1200,0,80,100").unwrap();
        assert!(roi.fits_in(1280, 720));
        assert!(!roi.fits_in(1279, 720));
        let huge = Roi::parse(&format!("{},0,8,8", u32::MAX)).unwrap();
        assert!(!huge.fits_in(u32::MAX, 10));
    }
}
