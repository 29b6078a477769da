//! The files `s3s-fs` keeps beside each object, and their removal.
//!
//! For every object it writes `{root}/.bucket-{b64(bucket)}.object-{b64(key)}.internal.json`
//! (ETag and checksums) and, with user metadata, `….metadata.json` (base64url without
//! padding), all in the root folder, and its DeleteObject(s) leave both behind: a store
//! whose retention deletes frames daily would still gain two files per frame forever, in
//! one folder. The store removes them when it deletes an object, and at start sweeps the
//! ones whose object is gone (left by earlier versions).

use std::io;
use std::path::{Path, PathBuf};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding, as `s3s-fs` names its files.
fn encode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(c) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len() * 3 / 4);
    let mut n = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        n = n << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((n >> bits & 0xff) as u8);
        }
    }
    String::from_utf8(bytes).ok()
}

/// The two side files of `bucket/key` (either may not exist).
pub(crate) fn paths(root: &Path, bucket: &str, key: &str) -> [PathBuf; 2] {
    let stem = format!(".bucket-{}.object-{}", encode(bucket), encode(key));
    [
        root.join(format!("{stem}.internal.json")),
        root.join(format!("{stem}.metadata.json")),
    ]
}

/// Removes the side files of `bucket/key`; a missing one is no error.
pub(crate) fn remove(root: &Path, bucket: &str, key: &str) {
    for p in paths(root, bucket, key) {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %p.display(), "cannot remove a deleted object's side file: {e}")
            }
        }
    }
}

/// `(bucket, key)` a side file's name stands for.
fn parse(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix(".bucket-")?;
    let rest = rest
        .strip_suffix(".internal.json")
        .or_else(|| rest.strip_suffix(".metadata.json"))?;
    let (bucket, key) = rest.split_once(".object-")?;
    // Multipart uploads in progress carry `.upload-{id}`: not ours to judge.
    if key.contains('.') {
        return None;
    }
    Some((decode(bucket)?, decode(key)?))
}

/// Removes the side files whose object no longer exists; returns how many.
pub(crate) fn sweep(root: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some((bucket, key)) = parse(&name) else {
            continue;
        };
        if !root.join(&bucket).join(&key).exists() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_base64url_without_padding_both_ways() {
        // RFC 4648 test vectors, URL-safe alphabet, no padding.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
            (
                "station_1/384/frame_1_000001.jpg",
                "c3RhdGlvbl8xLzM4NC9mcmFtZV8xXzAwMDAwMS5qcGc",
            ),
            ("??>", "Pz8-"),
        ] {
            assert_eq!(encode(plain), coded);
            assert_eq!(decode(coded).as_deref(), Some(plain));
        }
        assert_eq!(
            parse(".bucket-ZnJhbWVz.object-Zm9v.internal.json"),
            Some(("frames".into(), "foo".into()))
        );
        assert_eq!(
            parse(".bucket-ZnJhbWVz.object-Zm9v.upload-1.metadata.json"),
            None
        );
        assert_eq!(parse("frames"), None);
    }
}
