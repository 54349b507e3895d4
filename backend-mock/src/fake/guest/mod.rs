//! The simulated guest: what it sees ([`view`]), how it names devices
//! ([`naming`]), its access to shared folders ([`share_files`]), and its
//! answers to [`uvm_api::GuestProbe`] ([`probe`]).

pub(crate) mod naming;
pub(crate) mod probe;
pub(crate) mod share_files;
pub(crate) mod view;
