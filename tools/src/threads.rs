//! The threads of a process as `/proc/<pid>/task` shows them: name,
//! scheduler state, the kernel function a sleeping thread waits in, its
//! system call, and the CPU time it has taken (user, system, and the part
//! of user time spent running a guest). Two samples some time apart say
//! which thread was busy: a vCPU thread with guest time runs its guest, a
//! device worker with system time is in its backend's system calls.

use std::path::Path;
use std::time::Duration;

/// One thread at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSample {
    /// The thread id.
    pub tid: String,
    /// Its name (`comm`).
    pub name: String,
    /// Its scheduler state (`R`, `S`, `D`, ...).
    pub state: String,
    /// The kernel function it sleeps in (`0` when running).
    pub wchan: String,
    /// Its system call: the number and first two arguments, or `running`.
    pub syscall: String,
    /// User, system and guest time in clock ticks (`stat` fields 14, 15
    /// and 43).
    pub ticks: CpuTicks,
}

/// CPU time in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// User time (guest time included).
    pub user: u64,
    /// System time.
    pub system: u64,
    /// Time spent running a guest.
    pub guest: u64,
}

impl ThreadSample {
    /// The CPU time this thread took since its sample in `before` (all of
    /// it if it is not there: a thread started meanwhile).
    pub fn ticks_since(&self, before: &[ThreadSample]) -> CpuTicks {
        let was = before
            .iter()
            .find(|b| b.tid == self.tid)
            .map(|b| b.ticks)
            .unwrap_or_default();
        self.ticks.since(&was)
    }
}

impl CpuTicks {
    /// What grew from `earlier` to `self`.
    pub fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            guest: self.guest.saturating_sub(earlier.guest),
        }
    }
}

/// The threads of this process now.
pub fn of_this_process() -> Vec<ThreadSample> {
    of_task_dir(Path::new("/proc/self/task"))
}

/// The threads of process `pid` now (empty if it is gone).
pub fn of_process(pid: u32) -> Vec<ThreadSample> {
    of_task_dir(&Path::new("/proc").join(pid.to_string()).join("task"))
}

fn of_task_dir(dir: &Path) -> Vec<ThreadSample> {
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut samples: Vec<ThreadSample> = tasks
        .flatten()
        .map(|task| sample(&task.path(), &task.file_name().to_string_lossy()))
        .collect();
    samples.sort_by(|a, b| a.tid.cmp(&b.tid));
    samples
}

fn sample(dir: &Path, tid: &str) -> ThreadSample {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| format!("({e})"))
    };
    let (state, ticks) = parse_stat(&read("stat"));
    let syscall = read("syscall");
    ThreadSample {
        tid: tid.to_owned(),
        name: read("comm"),
        state,
        wchan: read("wchan"),
        syscall: syscall
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        ticks,
    }
}

/// The state and CPU ticks of a `stat` line ("pid (comm) S ..."; the
/// fields from the state on follow the last ')', the state being field 3).
fn parse_stat(stat: &str) -> (String, CpuTicks) {
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0);
    let state = fields.first().copied().unwrap_or("?").to_owned();
    (
        state,
        CpuTicks {
            user: field(14),
            system: field(15),
            guest: field(43),
        },
    )
}

/// Each thread of `after` with the CPU share it took since `before`
/// (`elapsed` apart), in percent of one CPU, busiest first; threads below
/// 1 % are left out.
pub fn busiest(
    before: &[ThreadSample],
    after: &[ThreadSample],
    elapsed: Duration,
) -> Vec<(String, f64)> {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return Vec::new();
    }
    let mut shares: Vec<(String, f64)> = after
        .iter()
        .map(|now| {
            let grew = now.ticks_since(before);
            let percent = (grew.user + grew.system) as f64 / ticks_per_second / seconds * 100.0;
            (now.name.clone(), percent)
        })
        .filter(|(_, percent)| *percent >= 1.0)
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_state_and_ticks_even_with_spaces_in_the_name() {
        // Fields 3.. of a real line, with a name holding ") " and spaces.
        let mut line = String::from("121 (vcpu 0) x) R");
        for n in 4..=52 {
            line.push_str(&format!(" {n}"));
        }
        let (state, ticks) = parse_stat(&line);
        assert_eq!(state, "R");
        assert_eq!(
            ticks,
            CpuTicks {
                user: 14,
                system: 15,
                guest: 43
            }
        );
    }

    #[test]
    fn the_busiest_threads_come_first_and_idle_ones_are_left_out() {
        let thread = |tid: &str, name: &str, user: u64, system: u64| ThreadSample {
            tid: tid.into(),
            name: name.into(),
            state: "S".into(),
            wchan: "0".into(),
            syscall: "running".into(),
            ticks: CpuTicks {
                user,
                system,
                guest: 0,
            },
        };
        let before = [thread("1", "main", 0, 0), thread("2", "vcpu0", 100, 0)];
        let after = [
            thread("1", "main", 0, 0),
            thread("2", "vcpu0", 150, 40),
            thread("3", "worker", 10, 10),
        ];
        let shares = busiest(&before, &after, Duration::from_secs(1));
        assert_eq!(
            shares,
            vec![("vcpu0".to_owned(), 90.0), ("worker".to_owned(), 20.0)]
        );
    }

    #[test]
    fn this_process_has_a_named_thread() {
        let threads = of_this_process();
        assert!(!threads.is_empty());
        assert!(threads.iter().all(|t| !t.name.is_empty()));
    }
}
