//! Where an object lands: the part of its key below the import's prefix, split
//! on `/`, under the destination directory. Pure functions, unit-tested here.
//!
//! A key keeps its structure: `photos/2024/a.jpg` imported from `s3://b/photos`
//! into `/dest` becomes `/dest/2024/a.jpg`. A key ending in `/` with no content
//! is a directory marker and becomes a directory. A key that cannot be a path
//! (an empty segment as in `a//b`, a `.` or `..` segment, a name over
//! `FS_NAME_BYTES_MAX` bytes, NUL) is refused with the reason, never rewritten:
//! two keys must never land on one name.

use crate::limits::FS_PATH_BYTES_MAX;
use crate::state::fs::names;
use crate::state::fs::Failure;

/// What an object becomes in the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// A regular file at these components (from the file system's root).
    File(Vec<String>),
    /// A directory (a directory marker, or the prefix's own marker).
    Dir(Vec<String>),
}

impl Landing {
    pub fn parts(&self) -> &[String] {
        match self {
            Landing::File(parts) | Landing::Dir(parts) => parts,
        }
    }

    /// The path as the file system service takes it (`/a/b`).
    pub fn path(&self) -> String {
        names::show(self.parts())
    }
}

/// The prefix as listed: empty (the whole bucket) or ending in `/`, so that
/// `s3://b/data` imports `data/…` and not `database/…`.
pub fn directory_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// Where `key` (of `size_bytes`) lands under `dest` (checked components), given
/// the listing's `prefix` (from [`directory_prefix`]); `Err` is the reason it
/// cannot be imported.
pub fn land(dest: &[String], prefix: &str, key: &str, size_bytes: u64) -> Result<Landing, String> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Err(format!("the key is not under the prefix {prefix:?}"));
    };
    let (body, marker) = match rest.strip_suffix('/') {
        Some(body) => (body, true),
        None => (rest, false),
    };
    if marker && size_bytes > 0 {
        return Err(format!(
            "the key ends in `/` but holds {size_bytes} bytes; a directory has no content"
        ));
    }
    let mut parts = dest.to_vec();
    if !body.is_empty() || marker {
        for segment in body.split('/') {
            parts.push(segment_name(segment)?);
        }
    } else if size_bytes > 0 {
        // The key equals the prefix (only possible for an empty prefix and an
        // empty key, which S3 does not allow): nothing to name the file.
        return Err("the key has no name below the prefix".to_string());
    }
    let path = names::show(&parts);
    if path.len() > FS_PATH_BYTES_MAX {
        return Err(format!(
            "the path would be {} bytes; the limit is {FS_PATH_BYTES_MAX}",
            path.len()
        ));
    }
    Ok(if marker || body.is_empty() {
        Landing::Dir(parts)
    } else {
        Landing::File(parts)
    })
}

/// One segment of a key as a file name, or why it cannot be one.
fn segment_name(segment: &str) -> Result<String, String> {
    match segment {
        "" => Err("the key has an empty segment (`//`, or `/` at its start)".to_string()),
        "." | ".." => Err(format!(
            "the key has a {segment:?} segment, which a path cannot hold"
        )),
        name => match names::check_name(name) {
            Ok(()) => Ok(name.to_string()),
            Err(Failure::Rejected(e)) => Err(format!("a segment cannot be a file name: {e}")),
            Err(Failure::Storage(e)) => Err(format!("a segment cannot be checked: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> Vec<String> {
        vec!["in".to_string()]
    }

    fn file(parts: &[&str]) -> Landing {
        Landing::File(parts.iter().map(|p| p.to_string()).collect())
    }

    fn dir(parts: &[&str]) -> Landing {
        Landing::Dir(parts.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_prefix_is_a_directory() {
        assert_eq!(directory_prefix(""), "");
        assert_eq!(directory_prefix("data"), "data/");
        assert_eq!(directory_prefix("data/"), "data/");
    }

    fn under_data(key: &str, size_bytes: u64) -> Result<Landing, String> {
        land(&dest(), "data/", key, size_bytes)
    }

    #[test]
    fn keys_keep_their_structure_below_the_prefix() {
        let land = under_data;
        assert_eq!(land("data/a.txt", 3), Ok(file(&["in", "a.txt"])));
        assert_eq!(
            land("data/x/y/z.bin", 0),
            Ok(file(&["in", "x", "y", "z.bin"]))
        );
        assert_eq!(land("data/ünï/ß 🙂", 1), Ok(file(&["in", "ünï", "ß 🙂"])));
        assert_eq!(
            land("data/pct%41 plus+", 1),
            Ok(file(&["in", "pct%41 plus+"]))
        );
        assert_eq!(land("data/sub/", 0), Ok(dir(&["in", "sub"])));
        assert_eq!(land("data/", 0), Ok(dir(&["in"])));
        assert_eq!(super::land(&[], "", "top.txt", 1), Ok(file(&["top.txt"])));
    }

    #[test]
    fn keys_that_cannot_be_paths_are_refused_with_the_reason() {
        let land = under_data;
        assert!(land("data/a//b", 1).unwrap_err().contains("empty segment"));
        assert!(land("data//b", 1).unwrap_err().contains("empty segment"));
        assert!(land("data/a/./b", 1).unwrap_err().contains("\".\""));
        assert!(land("data/../etc/passwd", 1)
            .unwrap_err()
            .contains("\"..\""));
        assert!(land("data/..", 1).unwrap_err().contains("\"..\""));
        let long = format!("data/{}", "n".repeat(256));
        assert!(land(&long, 1).unwrap_err().contains("255"));
        assert!(land(&format!("data/{}", "n".repeat(255)), 1).is_ok());
        assert!(land("data/sub/", 5).unwrap_err().contains("5 bytes"));
        assert!(land("other/x", 1).unwrap_err().contains("not under"));
        let deep = format!("data/{}", vec!["d".repeat(200); 21].join("/"));
        assert!(land(&deep, 1).unwrap_err().contains("4096"));
    }
}
