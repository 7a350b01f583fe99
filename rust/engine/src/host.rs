//! What the host offers: how many CPUs this process may really use, the load average, and a
//! process's resident memory.
//!
//! Inside a container `nproc` of the host is wrong twice over: the affinity mask and the cgroup
//! CPU quota both cut it down. We take the minimum of the three, as loky does.

use std::path::{Path, PathBuf};

use crate::sys;

/// CPUs usable by this process: min(host CPUs, affinity mask, cgroup quota rounded up), >= 1.
pub fn usable_cpus() -> u32 {
    let host = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let mut n = host.min(sys::affinity_cpus().unwrap_or(host));
    if let Some(quota) = cgroup_quota(Path::new("/"), &read("/proc/self/cgroup").unwrap_or_default()) {
        n = n.min(quota);
    }
    n.max(1)
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The CPU quota from cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`), walking up from this
/// process's cgroup, since a parent's limit applies too. `root` lets tests use a fake tree.
pub fn cgroup_quota(root: &Path, proc_self_cgroup: &str) -> Option<u32> {
    let mut best: Option<u32> = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        let (base, v2) = if controllers.is_empty() {
            (root.join("sys/fs/cgroup"), true)
        } else if controllers.split(',').any(|c| c == "cpu") {
            (root.join("sys/fs/cgroup").join(controllers), false)
        } else {
            continue;
        };
        let mut dir: PathBuf = base.join(path);
        loop {
            let quota = if v2 { quota_v2(&dir) } else { quota_v1(&dir) };
            if let Some(q) = quota {
                best = Some(best.map_or(q, |b| b.min(q)));
            }
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    best
}

fn quota_v2(dir: &Path) -> Option<u32> {
    let text = read(dir.join("cpu.max"))?;
    let mut it = text.split_whitespace();
    let (quota, period) = (it.next()?, it.next()?);
    ratio(quota.parse().ok()?, period.parse().ok()?)
}

fn quota_v1(dir: &Path) -> Option<u32> {
    let quota: i64 = read(dir.join("cpu.cfs_quota_us"))?.trim().parse().ok()?;
    let period: i64 = read(dir.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
    if quota <= 0 {
        return None;
    }
    ratio(quota as u64, period as u64)
}

fn ratio(quota: u64, period: u64) -> Option<u32> {
    if period == 0 || quota == 0 {
        return None;
    }
    Some(quota.div_ceil(period).min(u64::from(u32::MAX)) as u32)
}

/// The 1-minute load average of the machine, or `None` where the platform cannot tell.
pub fn load_average() -> Option<f64> {
    sysinfo::System::load_average().ok().map(|l| l.one)
}

/// Resident set size of `pid` in bytes (0 if unknown), read from /proc/<pid>/statm.
pub fn rss_bytes(pid: u32) -> u64 {
    let Some(text) = read(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * sys::page_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree(files: &[(&str, &str)]) -> tempdir::TempTree {
        tempdir::TempTree::new(files)
    }

    mod tempdir {
        use std::path::PathBuf;
        pub struct TempTree(pub PathBuf);
        impl TempTree {
            pub fn new(files: &[(&str, &str)]) -> TempTree {
                let unique = format!(
                    "multicore-cgroup-test-{}-{:?}",
                    std::process::id(),
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                );
                let root = std::env::temp_dir().join(unique);
                for (path, body) in files {
                    let p = root.join(path);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(p, body).unwrap();
                }
                TempTree(root)
            }
        }
        impl Drop for TempTree {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn v2_quota_rounds_up_and_takes_the_tightest_ancestor() {
        let t = fake_tree(&[
            ("sys/fs/cgroup/a/cpu.max", "300000 100000\n"),
            ("sys/fs/cgroup/a/b/cpu.max", "150000 100000\n"),
        ]);
        assert_eq!(cgroup_quota(&t.0, "0::/a/b\n"), Some(2));
    }

    #[test]
    fn v2_max_means_no_quota_and_garbage_is_ignored() {
        let t = fake_tree(&[("sys/fs/cgroup/a/cpu.max", "max 100000\n"), ("sys/fs/cgroup/b/cpu.max", "")]);
        assert_eq!(cgroup_quota(&t.0, "0::/a\n"), None);
        assert_eq!(cgroup_quota(&t.0, "0::/b\n"), None);
    }

    #[test]
    fn v1_quota_is_read() {
        let t = fake_tree(&[
            ("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "100000\n"),
            ("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(cgroup_quota(&t.0, "4:cpu,cpuacct:/docker/x\n"), Some(1));
        assert_eq!(cgroup_quota(&t.0, "4:cpu,cpuacct:/docker/y\n"), None);
    }

    #[test]
    fn usable_cpus_is_positive_and_at_most_the_affinity_mask() {
        let n = usable_cpus();
        assert!(n >= 1);
        assert!(n <= sys::affinity_cpus().unwrap());
    }

    #[test]
    fn own_rss_is_nonzero() {
        assert!(rss_bytes(std::process::id()) > 0);
    }

    #[test]
    fn load_average_is_finite() {
        assert!(load_average().expect("Linux reports a load average").is_finite());
    }
}
