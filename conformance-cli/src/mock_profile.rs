//! `--mock-without`: the capabilities to switch off in the `mock` backend,
//! to see how the suite reports a backend that lacks them (their checks end
//! `unclaimed`, and the run still exits 0).

use uvm_api::{Action, Operation, Resource};
use uvm_backend_mock::Profile;

/// How a capability is named on the command line.
pub const SYNTAX: &str =
    "a resource (all its operations), RESOURCE:OPERATION, pause, resume, save or restore";

/// [`Profile::all`] without the capabilities `names` (see [`SYNTAX`]).
pub fn without(names: &[String]) -> Result<Profile, String> {
    let mut profile = Profile::all();
    for name in names {
        let name = name.trim();
        profile = match name {
            "pause" => profile.without_action(Action::Pause),
            "resume" => profile.without_action(Action::Resume),
            "save" => profile.without_action(Action::Save),
            "restore" => profile.with_restore(false),
            _ => match name.split_once(':') {
                Some((resource, operation)) => {
                    profile.without(resource_named(resource)?, operation_named(operation)?)
                }
                None => {
                    let resource = resource_named(name)?;
                    resource
                        .defined_operations()
                        .iter()
                        .fold(profile, |p, op| p.without(resource, *op))
                }
            },
        };
    }
    Ok(profile)
}

fn resource_named(name: &str) -> Result<Resource, String> {
    name.parse::<Resource>().map_err(|_| unknown(name))
}

fn operation_named(name: &str) -> Result<Operation, String> {
    Operation::ALL
        .into_iter()
        .find(|op| op.to_string().eq_ignore_ascii_case(name))
        .ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> String {
    let resources = Resource::ALL.map(|r| r.to_string()).join(", ");
    format!("--mock-without: no capability {name:?} (give {SYNTAX}; resources: {resources})")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn switches_off_exactly_what_is_named() {
        let p = without(&names(&["memory", "pci:add", "save", "restore"])).unwrap();
        assert!(!p.allows(Resource::Memory, Operation::Update));
        assert!(!p.allows(Resource::Pci, Operation::Add));
        assert!(p.allows(Resource::Pci, Operation::Remove));
        assert!(p.allows(Resource::Scsi, Operation::Add));
        assert!(!p.allows_action(Action::Save));
        assert!(p.allows_action(Action::Pause));
        assert!(!p.allows_restore());
        assert_eq!(without(&[]).unwrap(), Profile::all());
    }

    #[test]
    fn unknown_names_are_refused_with_the_syntax() {
        let err = without(&names(&["floppy"])).unwrap_err();
        assert!(err.contains("floppy") && err.contains("scsi"), "{err}");
        assert!(without(&names(&["scsi:eject"])).is_err());
    }
}
