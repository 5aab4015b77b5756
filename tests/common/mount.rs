//! A `cairn mount` process for tests: started against given endpoints, waited for
//! until the kernel lists the mount, and unmounted (SIGTERM, then a lazy unmount
//! if the process had to be killed) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::CAIRN;

const MOUNT_WAIT: Duration = Duration::from_secs(30);

pub struct TestMount {
    pub path: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Whether the kernel lists `path` as a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(target.as_str()))
}

impl TestMount {
    /// Mounts with `args` (e.g. `--from`), through `endpoints`, on a fresh
    /// directory under `base` named `name`.
    pub fn start(base: &Path, name: &str, endpoints: &[String], args: &[&str]) -> TestMount {
        assert!(
            Path::new("/dev/fuse").exists(),
            "the mount tests need /dev/fuse (apt fuse3) and root"
        );
        let path = base.join(name);
        std::fs::create_dir_all(&path).expect("mount point");
        let log = base.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("mount log");
        let child = Command::new(CAIRN)
            .args(["--endpoints", &endpoints.join(",")])
            .arg("mount")
            .args(args)
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start cairn mount");
        let mut mount = TestMount {
            path,
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + MOUNT_WAIT;
        while !is_mounted(&mount.path) {
            if let Some(status) = mount
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("cairn mount exited ({status}): {}", mount.logs());
            }
            assert!(
                Instant::now() < deadline,
                "not mounted in time: {}",
                mount.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the mount dies without flushing; the kernel mount stays behind
    /// (ENOTCONN) until it is lazily unmounted, which this does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        lazy_unmount(&self.path);
    }

    /// SIGTERM and wait: buffered writes are sent, then the mount goes away.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                lazy_unmount(&self.path);
                panic!("cairn mount did not stop on SIGTERM: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn lazy_unmount(path: &Path) {
    if is_mounted(path) {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if self.child.is_some() {
            if std::thread::panicking() {
                eprintln!("--- mount log {}:\n{}", self.path.display(), self.logs());
            }
            self.kill();
        }
    }
}
