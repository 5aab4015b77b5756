//! The run directory: `<store>/<workload>-<nemesis>/<timestamp>/`, with `latest`
//! symlinks beside it and at the top of the store, so the newest run of a kind (and the
//! newest run overall) is always `.../latest`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The default store: `jepsen/store` in the source tree (gitignored).
pub fn default_store() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("store")
}

/// Creates a fresh run directory under `store/<test_name>/` and points the `latest`
/// links at it.
pub fn create_run_dir(store: &Path, test_name: &str, run_id: &str) -> Result<PathBuf, String> {
    let test_dir = store.join(test_name);
    std::fs::create_dir_all(&test_dir).map_err(|e| format!("{}: {e}", test_dir.display()))?;
    let stamp = timestamp(SystemTime::now());
    let mut run_dir = test_dir.join(&stamp);
    if run_dir.exists() {
        run_dir = test_dir.join(format!("{stamp}-{run_id}"));
    }
    std::fs::create_dir(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let name = run_dir
        .file_name()
        .expect("a run directory has a name")
        .to_owned();
    // The links are conveniences; a failure to update them is reported, not fatal.
    if let Err(error) = relink(&test_dir.join("latest"), Path::new(&name)) {
        eprintln!("cannot update the latest link: {error}");
    }
    if let Err(error) = relink(&store.join("latest"), &Path::new(test_name).join(&name)) {
        eprintln!("cannot update the latest link: {error}");
    }
    Ok(run_dir)
}

fn relink(link: &Path, target: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(link) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    std::os::unix::fs::symlink(target, link)
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC.
pub fn timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A run id from the process id and the clock: 6 hex digits, short enough for
/// interface names (`cj<id>v<n>` must fit Linux's 15 characters).
pub fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mixed = (u64::from(std::process::id()) << 24) ^ nanos ^ (nanos >> 29);
    let mixed = mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{:06x}", mixed >> 40)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_649_411_123);
        assert_eq!(timestamp(time), "20261125T233011.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap_day), "20000229T000000.000Z");
    }

    #[test]
    fn run_ids_fit_interface_names() {
        let id = run_id();
        assert_eq!(id.len(), 6);
        assert!(format!("cj{id}v9").len() <= 15);
    }
}
