//! The POSIX error numbers the file system service returns, shared by the state
//! machine, the API layer, the SDK and the mount (a leaf module).

use serde::{Deserialize, Serialize};

#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Errno {
    EPERM,
    ENOENT,
    EEXIST,
    EXDEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EFBIG,
    ENOSPC,
    EMLINK,
    ENAMETOOLONG,
    ENOTEMPTY,
    ELOOP,
    ENODATA,
    E2BIG,
    ESTALE,
    ENOTSUP,
}

impl Errno {
    pub const ALL: [Errno; 17] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::EEXIST,
        Errno::EXDEV,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::EINVAL,
        Errno::EFBIG,
        Errno::ENOSPC,
        Errno::EMLINK,
        Errno::ENAMETOOLONG,
        Errno::ENOTEMPTY,
        Errno::ELOOP,
        Errno::ENODATA,
        Errno::E2BIG,
        Errno::ESTALE,
        Errno::ENOTSUP,
    ];

    /// The symbolic name, as the wire code (`cairn-code`) carries it.
    pub fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::EEXIST => "EEXIST",
            Errno::EXDEV => "EXDEV",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::EFBIG => "EFBIG",
            Errno::ENOSPC => "ENOSPC",
            Errno::EMLINK => "EMLINK",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ELOOP => "ELOOP",
            Errno::ENODATA => "ENODATA",
            Errno::E2BIG => "E2BIG",
            Errno::ESTALE => "ESTALE",
            Errno::ENOTSUP => "ENOTSUP",
        }
    }

    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The Linux number (what a FUSE reply carries).
    pub fn raw(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::EEXIST => 17,
            Errno::EXDEV => 18,
            Errno::ENOTDIR => 20,
            Errno::EISDIR => 21,
            Errno::EINVAL => 22,
            Errno::EFBIG => 27,
            Errno::ENOSPC => 28,
            Errno::EMLINK => 31,
            Errno::ENAMETOOLONG => 36,
            Errno::ENOTEMPTY => 39,
            Errno::ELOOP => 40,
            Errno::ENODATA => 61,
            Errno::E2BIG => 7,
            Errno::ESTALE => 116,
            Errno::ENOTSUP => 95,
        }
    }

    /// The errno of a local I/O error (node-local storage), if it is one of ours.
    pub fn from_raw(raw: i32) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| e.raw() == raw)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_name(e.name()), Some(e));
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
        }
    }
}
