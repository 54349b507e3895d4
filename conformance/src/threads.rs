//! Where this process's threads are: one line per thread from
//! `/proc/self/task`, with its name, scheduler state, the kernel function it
//! sleeps in and the system call it is in. Printed when a check overruns its
//! time limit, so that a hang in a backend says which thread waits on what.

use std::fmt::Write as _;

use crate::checks::procfs::numbered_entries;

/// One thread as `/proc/self/task/<tid>` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    /// Kernel thread id.
    pub tid: u32,
    /// Thread name (`comm`).
    pub name: String,
    /// Scheduler state letter (`R` running, `S` sleeping, `D` in
    /// uninterruptible wait, ...), `?` when unreadable.
    pub state: char,
    /// Kernel function the thread sleeps in (`wchan`), empty when running
    /// or unreadable.
    pub wchan: String,
    /// System call number the thread is blocked in, if any (`syscall`).
    pub syscall: Option<i64>,
}

/// The state letter from the contents of a `stat` file: the first field
/// after the parenthesised name (which may itself hold spaces and `)`).
fn state_from_stat(stat: &str) -> char {
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .and_then(|field| field.chars().next())
        .unwrap_or('?')
}

/// The system call number from the contents of a `syscall` file: `running`
/// or a number followed by the arguments.
fn syscall_from_file(text: &str) -> Option<i64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The threads of this process now (empty where `/proc` cannot be read).
pub fn thread_states() -> Vec<ThreadState> {
    let Ok(tids) = numbered_entries("/proc/self/task") else {
        return Vec::new();
    };
    let mut out: Vec<ThreadState> = tids
        .into_iter()
        .filter_map(|tid| {
            let dir = format!("/proc/self/task/{tid}");
            // A thread may end between the listing and the reads.
            let name = std::fs::read_to_string(format!("{dir}/comm")).ok()?;
            let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
            let wchan = std::fs::read_to_string(format!("{dir}/wchan")).unwrap_or_default();
            let syscall = std::fs::read_to_string(format!("{dir}/syscall")).unwrap_or_default();
            Some(ThreadState {
                tid,
                name: name.trim().to_owned(),
                state: state_from_stat(&stat),
                wchan: if wchan.trim() == "0" {
                    String::new()
                } else {
                    wchan.trim().to_owned()
                },
                syscall: syscall_from_file(&syscall),
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// [`thread_states`] as text, one thread per line.
pub fn thread_report() -> String {
    let mut text = String::new();
    for t in thread_states() {
        let syscall = t
            .syscall
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            text,
            "  tid {:<7} {:<16} {} syscall {:<4} wchan {}",
            t.tid,
            t.name,
            t.state,
            syscall,
            if t.wchan.is_empty() { "-" } else { &t.wchan }
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_the_field_after_the_name() {
        assert_eq!(state_from_stat("42 (tokio-rt) S 1 42 42 0"), 'S');
        assert_eq!(state_from_stat("7 (odd) name)) D 1 2"), 'D');
        assert_eq!(state_from_stat(""), '?');
        assert_eq!(state_from_stat("no parens"), '?');
    }

    #[test]
    fn syscall_is_the_first_number() {
        assert_eq!(syscall_from_file("202 0x1 0x2\n"), Some(202));
        assert_eq!(syscall_from_file("running\n"), None);
        assert_eq!(syscall_from_file(""), None);
    }

    #[test]
    fn lists_this_thread() {
        // /proc/thread-self links to <pid>/task/<this thread's tid>.
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: u32 = link
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let me = thread_states();
        assert!(
            me.iter().any(|t| t.tid == tid),
            "this thread is missing from /proc/self/task: {me:?}"
        );
        // Other tests' threads come and go: only this one is sure to be listed.
        let report = thread_report();
        assert!(
            report.lines().any(|l| l.contains(&format!("tid {tid} "))),
            "{report}"
        );
    }
}
