//! What a name, a path, a symlink target or an attribute name may be. Pure
//! functions, shared by apply and the API layer (which checks before any data
//! moves).
//!
//! Paths are resolved lexically and never leave the root: `.` is dropped and `..`
//! pops a component (at the root it stays there, as `/..` does on Unix). Names are
//! UTF-8 (the wire carries strings), 1..=255 bytes, without `/` or NUL.

use super::{refuse, Step};
use crate::errno::Errno;
use crate::limits::{
    FS_NAME_BYTES_MAX, FS_NAME_CHARS_MAX, FS_PATH_BYTES_MAX, FS_SYMLINK_BYTES_MAX,
    FS_XATTR_NAME_BYTES_MAX, FS_XATTR_VALUE_BYTES_MAX,
};

/// One directory entry's name.
pub fn check_name(name: &str) -> Step<()> {
    if name.is_empty() {
        return refuse(Errno::EINVAL, "a name must not be empty");
    }
    if name.len() > FS_NAME_BYTES_MAX {
        return refuse(
            Errno::ENAMETOOLONG,
            format!(
                "name is {} bytes; the limit is {FS_NAME_BYTES_MAX}",
                name.len()
            ),
        );
    }
    if name.contains('\0') {
        return refuse(Errno::EINVAL, "a name must not contain NUL");
    }
    if name.contains('/') {
        return refuse(Errno::EINVAL, "a name must not contain '/'");
    }
    if name == "." || name == ".." {
        return refuse(
            Errno::EINVAL,
            format!("{name:?} cannot be created or removed"),
        );
    }
    Ok(())
}

/// Splits `path` (relative to the root; a leading `/` is optional) into checked
/// components, resolving `.` and `..` without ever leaving the root.
pub fn parse_path(path: &str) -> Step<Vec<String>> {
    if path.len() > FS_PATH_BYTES_MAX {
        return refuse(
            Errno::ENAMETOOLONG,
            format!(
                "path is {} bytes; the limit is {FS_PATH_BYTES_MAX}",
                path.len()
            ),
        );
    }
    if path.contains('\0') {
        return refuse(Errno::EINVAL, "a path must not contain NUL");
    }
    let mut parts: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => {
                check_name(name)?;
                parts.push(name.to_string());
            }
        }
    }
    Ok(parts)
}

/// A path split into its directory and last name; the root has no last name.
pub fn split_last(mut parts: Vec<String>) -> Step<(Vec<String>, String)> {
    match parts.pop() {
        Some(name) => Ok((parts, name)),
        None => refuse(Errno::EINVAL, "the root directory cannot be used here"),
    }
}

/// The path of components, as shown to users.
pub fn show(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

pub fn check_symlink_target(target: &str) -> Step<()> {
    if target.is_empty() {
        return refuse(Errno::ENOENT, "a symlink target must not be empty");
    }
    if target.len() > FS_SYMLINK_BYTES_MAX {
        return refuse(
            Errno::ENAMETOOLONG,
            format!(
                "symlink target is {} bytes; the limit is {FS_SYMLINK_BYTES_MAX}",
                target.len()
            ),
        );
    }
    if target.contains('\0') {
        return refuse(Errno::EINVAL, "a symlink target must not contain NUL");
    }
    Ok(())
}

pub fn check_xattr(name: &str, value: Option<&[u8]>) -> Step<()> {
    if name.is_empty() {
        return refuse(Errno::EINVAL, "an attribute name must not be empty");
    }
    if name.len() > FS_XATTR_NAME_BYTES_MAX {
        return refuse(
            Errno::ENAMETOOLONG,
            format!(
                "attribute name is {} bytes; the limit is {FS_XATTR_NAME_BYTES_MAX}",
                name.len()
            ),
        );
    }
    if name.contains('\0') {
        return refuse(Errno::EINVAL, "an attribute name must not contain NUL");
    }
    if let Some(value) = value {
        if value.len() > FS_XATTR_VALUE_BYTES_MAX {
            return refuse(
                Errno::E2BIG,
                format!(
                    "attribute value is {} bytes; the limit is {FS_XATTR_VALUE_BYTES_MAX}",
                    value.len()
                ),
            );
        }
    }
    Ok(())
}

/// A file system's name: 1..=64 of `[A-Za-z0-9._-]`.
pub fn check_fs_name(name: &str) -> Step<()> {
    let ok = !name.is_empty()
        && name.len() <= FS_NAME_CHARS_MAX
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if !ok || name == "." || name == ".." {
        return Err(super::Failure::Rejected(super::Error::invalid(
            "fs",
            format!("a file system name is 1 to {FS_NAME_CHARS_MAX} of A-Z a-z 0-9 . _ -"),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fs::Failure;

    fn errno<T: std::fmt::Debug>(step: Step<T>) -> Errno {
        match step {
            Err(Failure::Rejected(crate::state::Error::Fs { errno, .. })) => errno,
            other => panic!("expected an errno, got {other:?}"),
        }
    }

    #[test]
    fn paths_resolve_dots_and_never_leave_the_root() {
        assert_eq!(parse_path("/a/./b//c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(parse_path("a/b/../c").unwrap(), ["a", "c"]);
        assert_eq!(
            parse_path("../../../etc/passwd").unwrap(),
            ["etc", "passwd"]
        );
        assert_eq!(parse_path("a/../..").unwrap(), Vec::<String>::new());
        assert_eq!(parse_path("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_path("sp ace/ünï").unwrap(), ["sp ace", "ünï"]);
    }

    #[test]
    fn hostile_names_get_their_errno() {
        assert_eq!(errno(parse_path("a\0b")), Errno::EINVAL);
        assert_eq!(errno(parse_path(&"x".repeat(256))), Errno::ENAMETOOLONG);
        assert!(parse_path(&"x".repeat(255)).is_ok());
        let long = vec!["d".repeat(200); 21].join("/");
        assert_eq!(errno(parse_path(&long)), Errno::ENAMETOOLONG);
        assert_eq!(errno(check_name("a/b")), Errno::EINVAL);
        assert_eq!(errno(check_name("..")), Errno::EINVAL);
        assert_eq!(errno(split_last(Vec::new())), Errno::EINVAL);
        assert_eq!(
            errno(check_xattr("user.x", Some(&[0; 65537]))),
            Errno::E2BIG
        );
        assert_eq!(
            errno(check_symlink_target(&"t".repeat(4097))),
            Errno::ENAMETOOLONG
        );
    }
}
