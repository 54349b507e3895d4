//! Ethernet MAC addresses, parsed strictly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A unicast Ethernet MAC address.
///
/// Parsed from six two-digit hex groups separated by `:` or `-`
/// (`02:00:00:12:34:56`). Multicast addresses (lowest bit of the first octet
/// set) and the all-zero address are refused because no NIC can use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress([u8; 6]);

impl MacAddress {
    /// Builds an address from its octets, refusing multicast and all-zero ones.
    pub fn new(octets: [u8; 6]) -> Result<Self, Error> {
        if octets == [0; 6] {
            return Err(Error::invalid_argument(
                "mac",
                "the all-zero address is not usable",
            ));
        }
        if octets[0] & 1 == 1 {
            return Err(Error::invalid_argument(
                "mac",
                "a multicast address cannot be assigned to a NIC",
            ));
        }
        Ok(MacAddress(octets))
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the locally-administered bit is set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }
}

impl FromStr for MacAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| Error::invalid_argument("mac", format!("{s:?}: {reason}"));
        let groups: Vec<&str> = s.split([':', '-']).collect();
        if groups.len() != 6 {
            return Err(bad("expected six groups separated by ':' or '-'"));
        }
        let mut octets = [0u8; 6];
        for (octet, group) in octets.iter_mut().zip(&groups) {
            if group.len() != 2 {
                return Err(bad("each group must be two hex digits"));
            }
            *octet = u8::from_str_radix(group, 16).map_err(|_| bad("not hexadecimal"))?;
        }
        MacAddress::new(octets).map_err(|e| match e {
            Error::InvalidArgument { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_prints_canonically() {
        let m: MacAddress = "02-00-00-AB-cd-01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:00:ab:cd:01");
        assert!(m.is_local());
        assert_eq!("02:00:00:ab:cd:01".parse::<MacAddress>().unwrap(), m);
    }

    #[test]
    fn refuses_malformed_and_unusable_addresses() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:0g",
            "2:00:00:00:00:001",
            "00:00:00:00:00:00",
            "01:00:5e:00:00:01",
            "02:00:00:00:00:00 ",
        ] {
            let err = bad.parse::<MacAddress>().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { argument, .. } if argument == "mac"),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let m: MacAddress = "02:11:22:33:44:55".parse().unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"02:11:22:33:44:55\"");
        assert_eq!(serde_json::from_str::<MacAddress>(&json).unwrap(), m);
        assert!(serde_json::from_str::<MacAddress>("\"ff:ff:ff:ff:ff:ff\"").is_err());
    }
}
