//! The nested lab's L1 output: two serial channels and what the lab does with
//! each line.
//!
//! The L1 has two serial ports. Its kernel console is COM1 (`ttyS0`, QEMU's
//! stdout here): the kernel's messages and `/init`'s own lines, and nothing
//! else. The program runs with its stdout and stderr on COM2 (`ttyS1`, a
//! unix socket QEMU serves and the lab reads), where `/init` also prints the
//! start and exit markers around it. So a program that prints a guest's
//! `BUG: soft lockup` line (an L2 console, say) cannot pass for the L1 kernel:
//! [`Console`] looks for lockup reports on the kernel channel only. Every
//! line of either channel counts as a sign of life for the silence limit.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;

use crate::lockup;

/// The line `/init` prints before running the program.
pub const START_MARKER: &str = "UVM_LAB_START";
/// The line `/init` prints with the program's exit code.
pub const EXIT_MARKER: &str = "UVM_LAB_EXIT=";

/// How many lines outside the program's run are kept to show on failure.
const TAIL_LINES: usize = 60;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The L1 kernel console (`ttyS0`): the kernel and `/init` itself.
    Kernel,
    /// The program's own channel (`ttyS1`): its stdout and stderr, between
    /// the markers `/init` prints.
    Program,
}

/// One line of L1 output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The channel it arrived on.
    pub channel: Channel,
    /// The text (a trailing `\r` removed; invalid UTF-8 replaced).
    pub text: String,
}

/// Reads `source` line by line on a thread of its own and sends each line,
/// tagged with `channel`, until the source ends or the receiver is gone.
pub fn spawn_reader(
    source: impl Read + Send + 'static,
    channel: Channel,
    tx: mpsc::Sender<Line>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(source).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned();
            if tx.send(Line { channel, text }).is_err() {
                break;
            }
        }
    })
}

/// Finds the exit code in an exit-marker line.
pub fn parse_exit(line: &str) -> Option<i32> {
    let rest = &line[line.find(EXIT_MARKER)? + EXIT_MARKER.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// What the lab does with a line, as [`Console::on_line`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The L1 kernel reports a lockup: stop the L1.
    Lockup,
    /// The start marker: the program's output follows.
    Started,
    /// The exit marker with the program's exit code.
    Exited(i32),
    /// Stream the line (to stdout).
    Show,
    /// Keep it quiet (it is kept in [`Console::tail`]).
    Hold,
}

/// The lab's view of one L1's output: whether the program has started and
/// exited, and the last lines printed outside its run.
#[derive(Debug, Default)]
pub struct Console {
    verbose: bool,
    started: bool,
    exit: Option<i32>,
    tail: VecDeque<String>,
    warned_shared: bool,
}

impl Console {
    /// A console that streams the boot log too when `verbose`.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            ..Self::default()
        }
    }

    /// The program's exit code, once the exit marker was seen.
    pub fn exit(&self) -> Option<i32> {
        self.exit
    }

    /// The last lines that were held back (boot log, power-off), oldest first.
    pub fn tail(&self) -> impl Iterator<Item = &str> {
        self.tail.iter().map(String::as_str)
    }

    /// Whether the start marker arrived on the kernel console: the L1 had no
    /// second serial port and `/init` ran the program on its console.
    pub fn program_on_kernel_console(&self) -> bool {
        self.warned_shared
    }

    /// Decides what to do with `line`. Only the kernel channel can report a
    /// lockup; the markers count on either (`/init` falls back to its
    /// console when the L1 has no second serial port, and says so).
    pub fn on_line(&mut self, line: &Line) -> Action {
        let text = line.text.as_str();
        if line.channel == Channel::Kernel && lockup::is_lockup_report(text) {
            return Action::Lockup;
        }
        if text.contains(START_MARKER) && !self.started {
            self.started = true;
            self.warned_shared = line.channel == Channel::Kernel;
            return Action::Started;
        }
        if let Some(code) = parse_exit(text) {
            self.exit = Some(code);
            return Action::Exited(code);
        }
        if (self.started && self.exit.is_none()) || self.verbose {
            return Action::Show;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.text.clone());
        Action::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(text: &str) -> Line {
        Line {
            channel: Channel::Kernel,
            text: text.into(),
        }
    }

    fn program(text: &str) -> Line {
        Line {
            channel: Channel::Program,
            text: text.into(),
        }
    }

    const LOCKUP: &str =
        "[  812.401233] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [kvm-pit/1234:311]";

    #[test]
    fn a_program_line_reporting_a_lockup_does_not_stop_the_l1() {
        let mut console = Console::new(false);
        assert_eq!(
            console.on_line(&program("UVM_LAB_START uptime=3.1")),
            Action::Started
        );
        // An L2 guest's console echoed by the program (or a test's log).
        assert_eq!(console.on_line(&program(LOCKUP)), Action::Show);
        assert_eq!(
            console.on_line(&program(
                "guest: rcu: INFO: rcu_sched self-detected stall on CPU"
            )),
            Action::Show
        );
        assert_eq!(
            console.on_line(&program("UVM_LAB_EXIT=0")),
            Action::Exited(0)
        );
        assert_eq!(console.exit(), Some(0));
    }

    #[test]
    fn the_same_text_from_the_l1_kernel_stops_it() {
        let mut console = Console::new(false);
        assert_eq!(console.on_line(&kernel(LOCKUP)), Action::Lockup);
        assert_eq!(console.on_line(&program("UVM_LAB_START")), Action::Started);
        assert_eq!(console.on_line(&kernel(LOCKUP)), Action::Lockup);
        assert_eq!(
            console.on_line(&kernel(
                "[ 900.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"
            )),
            Action::Lockup
        );
    }

    #[test]
    fn streams_the_run_and_holds_the_rest_back() {
        let mut console = Console::new(false);
        assert_eq!(console.on_line(&kernel("[ 0.1] booting")), Action::Hold);
        assert_eq!(console.on_line(&program("UVM_LAB_START")), Action::Started);
        assert!(!console.program_on_kernel_console());
        assert_eq!(console.on_line(&program("check PASSED")), Action::Show);
        // The L1 kernel's lines during the run are streamed as before.
        assert_eq!(console.on_line(&kernel("[ 5.0] kvm: msg")), Action::Show);
        assert_eq!(
            console.on_line(&program("UVM_LAB_EXIT=3")),
            Action::Exited(3)
        );
        assert_eq!(
            console.on_line(&kernel("[ 9.0] reboot: Power down")),
            Action::Hold
        );
        let tail: Vec<&str> = console.tail().collect();
        assert_eq!(tail, ["[ 0.1] booting", "[ 9.0] reboot: Power down"]);
    }

    #[test]
    fn verbose_streams_the_boot_log_too_and_the_tail_is_bounded() {
        let mut console = Console::new(true);
        assert_eq!(console.on_line(&kernel("[ 0.1] booting")), Action::Show);
        let mut quiet = Console::new(false);
        for n in 0..100 {
            quiet.on_line(&kernel(&format!("line {n}")));
        }
        assert_eq!(quiet.tail().count(), TAIL_LINES);
        assert_eq!(quiet.tail().next(), Some("line 40"));
    }

    #[test]
    fn markers_on_the_kernel_console_still_count_and_are_noticed() {
        let mut console = Console::new(false);
        assert_eq!(
            console.on_line(&kernel("UVM_LAB_START uptime=2.0")),
            Action::Started
        );
        assert!(console.program_on_kernel_console());
        assert_eq!(
            console.on_line(&kernel("UVM_LAB_EXIT=125")),
            Action::Exited(125)
        );
    }

    #[test]
    fn parses_exit_markers() {
        assert_eq!(parse_exit("UVM_LAB_EXIT=0"), Some(0));
        assert_eq!(parse_exit("[  1.0] x UVM_LAB_EXIT=42\r"), Some(42));
        assert_eq!(parse_exit("UVM_LAB_EXIT="), None);
        assert_eq!(parse_exit("hello"), None);
    }

    #[test]
    fn the_reader_tags_lines_and_drops_carriage_returns() {
        let (tx, rx) = mpsc::channel();
        let data: &[u8] = b"one\r\ntwo\n\xffpartial";
        spawn_reader(data, Channel::Program, tx).join().unwrap();
        let lines: Vec<Line> = rx.iter().collect();
        assert_eq!(
            lines,
            [program("one"), program("two"), program("\u{fffd}partial")]
        );
    }
}
