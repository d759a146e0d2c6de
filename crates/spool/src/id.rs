use std::fmt;
use std::str::FromStr;

/// Spool-wide message identifier: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpoolId(pub u128);

impl SpoolId {
    /// A fresh time-ordered id (uuid v7; monotonic within this process).
    #[allow(clippy::new_without_default)] // a Default that is random would surprise
    pub fn new() -> Self {
        SpoolId(uuid::Uuid::now_v7().as_u128())
    }

    pub fn to_le_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    pub fn from_le_bytes(bytes: [u8; 16]) -> Self {
        SpoolId(u128::from_le_bytes(bytes))
    }
}

impl fmt::Display for SpoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SpoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpoolId({self})")
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid spool id {0:?}: expected 32 hex digits")]
pub struct ParseSpoolIdError(String);

impl FromStr for SpoolId {
    type Err = ParseSpoolIdError;

    /// Exactly 32 hex digits; stricter than `u128::from_str_radix`, which accepts a
    /// leading `+` and short strings, so an id has one spelling only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseSpoolIdError(s.chars().take(64).collect()));
        }
        u128::from_str_radix(s, 16)
            .map(SpoolId)
            .map_err(|_| ParseSpoolIdError(s.to_string()))
    }
}

impl serde::Serialize for SpoolId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SpoolId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_roundtrip() {
        let id = SpoolId::new();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s, s.to_lowercase());
        assert_eq!(s.parse::<SpoolId>().unwrap(), id);
        assert_eq!(SpoolId(1).to_string(), "00000000000000000000000000000001");
    }

    #[test]
    fn parse_rejects_other_spellings() {
        for bad in [
            "",
            "+0000000000000000000000000000001",
            "abc",
            "g0000000000000000000000000000000",
        ] {
            assert!(bad.parse::<SpoolId>().is_err(), "{bad:?} accepted");
        }
        let upper = "ABCDEF00000000000000000000000000";
        assert_eq!(upper.parse::<SpoolId>().unwrap().0, 0xabcdef << 104);
    }

    #[test]
    fn ids_are_time_ordered_and_unique() {
        let ids: Vec<SpoolId> = (0..1000).map(|_| SpoolId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn serde_as_hex_string() {
        let id = SpoolId(0x1234);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000000000000000000000001234\"");
        assert_eq!(serde_json::from_str::<SpoolId>(&json).unwrap(), id);
    }
}
