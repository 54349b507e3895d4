//! The checks, one module per area, and the list of them all.

mod device;
mod guest;
mod plug;
mod support;
mod unplug;

mod bad_input;
mod cleanup;
mod concurrency;
mod cpu_group;
mod exit;
mod lifecycle;
mod memory;
mod network;
mod ops;
mod pci;
mod update;
pub(crate) use pci::PCI_DEVICE_ENV;
mod processor;
mod scsi;
mod shares;
mod stats;
mod truthfulness;
mod vpmem;
mod vsock;

pub(crate) mod procfs;

use crate::check::Check;
use crate::outcome::Area;

/// Defines `pub(crate) fn $name() -> Check`, the constructor of one check, in
/// the area module it is invoked in; the list of every check
/// ([`crate::__uvm_conformance_with_checks`]) calls it by that name.
macro_rules! check_fn {
    ($area:ident, $name:ident, $desc:expr, $run:expr, $exclusive:expr, $timeout:expr) => {
        pub(crate) fn $name() -> $crate::check::Check {
            $crate::check::Check {
                name: stringify!($name),
                area: $crate::outcome::Area::$area,
                description: $desc,
                run: $run,
                exclusive: $exclusive,
                timeout: $timeout,
            }
        }
    };
}
pub(crate) use check_fn;

/// A check whose body is `async fn(Ctx) -> Step`; `exclusive` and `timeout`
/// may follow (see [`Check`]).
macro_rules! check {
    ($area:ident, $name:ident, $desc:expr, $body:path $(,)?) => {
        $crate::checks::check!($area, $name, $desc, $body, exclusive: false, timeout: None);
    };
    ($area:ident, $name:ident, $desc:expr, $body:path, exclusive: $exclusive:expr, timeout: $timeout:expr $(,)?) => {
        $crate::checks::check_fn!(
            $area,
            $name,
            $desc,
            |ctx| Box::pin(async move { $crate::step::finish($body(ctx).await) }),
            $exclusive,
            $timeout
        );
    };
}
pub(crate) use check;

/// A check run over each of `$kinds` with a body `async fn(Ctx, &dyn DeviceKind) -> Step`.
macro_rules! kind_check {
    ($area:ident, $name:ident, $desc:expr, $kinds:expr, $body:path $(,)?) => {
        $crate::checks::check_fn!(
            $area,
            $name,
            $desc,
            |ctx| {
                Box::pin(async move {
                    $crate::step::finish(
                        $crate::checks::plug_each(ctx, $kinds, |c, k| Box::pin($body(c, k))).await,
                    )
                })
            },
            false,
            None
        );
    };
}
pub(crate) use kind_check;

/// The plug and unplug rules every kind of device follows, as checks named by the caller.
macro_rules! device_checks {
    ($area:ident, $kinds:expr;
        $cold:ident, $hot:ident, $agree:ident, $dup:ident, $paused:ident,
        $stopped:ident, $hot_rm:ident, $cold_rm:ident, $readd:ident, $double:ident,
        $unknown:ident, $reserved:ident $(,)?) => {
        $crate::checks::kind_check!($area, $cold,
            "added before start, the device is in the guest after boot, with the right properties and contents",
            $kinds, $crate::checks::plug::cold_plug_visible);
        $crate::checks::kind_check!($area, $hot,
            "added while running, the device shows up in the guest with the right properties and contents",
            $kinds, $crate::checks::plug::hot_add_visible);
        $crate::checks::kind_check!($area, $agree,
            "cold plug before start and hot add while running give the guest the same device",
            $kinds, $crate::checks::plug::cold_and_hot_agree);
        $crate::checks::kind_check!($area, $dup,
            "adding an id already in use gives AlreadyExists and leaves the first device as it was",
            $kinds, $crate::checks::plug::duplicate_add);
        $crate::checks::kind_check!($area, $paused,
            "add and remove while paused give InvalidState and change nothing",
            $kinds, $crate::checks::plug::changes_while_paused);
        $crate::checks::kind_check!($area, $stopped,
            "add and remove on a stopped VM give InvalidState",
            $kinds, $crate::checks::plug::changes_after_stop);
        $crate::checks::kind_check!($area, $hot_rm,
            "removed while running, the removal completes and the guest no longer sees the device",
            $kinds, $crate::checks::unplug::hot_remove);
        $crate::checks::kind_check!($area, $cold_rm,
            "removed before start, the removal completes and the guest never sees the device",
            $kinds, $crate::checks::unplug::cold_remove);
        $crate::checks::kind_check!($area, $readd,
            "after a completed removal the same id can be added again, and works, several times over",
            $kinds, $crate::checks::unplug::readd);
        $crate::checks::kind_check!($area, $double,
            "removing a device whose removal completed gives NotFound",
            $kinds, $crate::checks::unplug::double_remove);
        $crate::checks::kind_check!($area, $unknown,
            "removing an id that was never added gives NotFound",
            $kinds, $crate::checks::unplug::remove_unknown);
        $crate::checks::kind_check!($area, $reserved,
            "an id being released cannot be reused until its removal completes, and can be right after",
            $kinds, $crate::checks::unplug::reserved_until_complete);
    };
}
pub(crate) use device_checks;

/// The check that a device in the config's boot devices is in the guest.
macro_rules! boot_check {
    ($area:ident, $name:ident, $kinds:expr) => {
        $crate::checks::kind_check!($area, $name,
            "a device in the config's boot devices is in the guest after start (or the config is refused with NotSupported if the backend cannot add it)",
            $kinds, $crate::checks::plug::boot_config_visible);
    };
}
pub(crate) use boot_check;

pub(crate) use plug::each as plug_each;

/// Defines [`all_checks`] from the list of every check
/// ([`crate::__uvm_conformance_with_checks`]): each `area: name ...;` entry
/// calls the constructor `area::name()` that the area module defines with
/// [`check!`], [`kind_check!`], [`device_checks!`] or [`boot_check!`]. A name
/// the list has and no module defines does not compile; a check a module
/// defines and the list lacks is dead code, which the lints refuse.
macro_rules! suite {
    ($($area:ident: $($name:ident)*;)*) => {
        /// Every check of the suite, grouped by area in [`Area::ALL`] order.
        pub fn all_checks() -> Vec<Check> {
            vec![$($($area::$name(),)*)*]
        }
    };
}
crate::__uvm_conformance_with_checks!(suite);

/// The checks of one area.
pub fn area_checks(area: Area) -> Vec<Check> {
    all_checks()
        .into_iter()
        .filter(|c| c.area == area)
        .collect()
}

/// The check called `name`.
pub fn find(name: &str) -> Option<Check> {
    all_checks().into_iter().find(|c| c.name == name)
}
