//! Content identifiers: 32-byte SHA-256 (or keyed HMAC-SHA-256) digests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Length of an [`Id`] in bytes.
pub const ID_LEN: usize = 32;

/// A 32-byte identifier, shown as 64 lowercase hex digits.
///
/// Chunk ids, pack ids, index ids and backup ids are all `Id`s.
///
/// # Examples
///
/// ```
/// use backup_core::Id;
/// let id = Id::digest(b"hello");
/// let text = id.to_string();
/// assert_eq!(text.len(), 64);
/// assert_eq!(text.parse::<Id>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id(pub [u8; ID_LEN]);

/// Hashes the first 8 bytes only: ids are SHA-256 or HMAC-SHA-256 digests,
/// so those bytes are already uniform, and finding many ids that share
/// them takes about 2^64 work per id. The hash maps of the index hold one
/// entry per stored chunk, and loading or consulting them is then a
/// quarter of the hashing work.
impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(prefix));
    }
}

impl Id {
    /// The plain SHA-256 digest of `data`.
    pub fn digest(data: &[u8]) -> Id {
        Id(Sha256::digest(data).into())
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Builds an id from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        <[u8; ID_LEN]>::try_from(bytes).ok().map(Id)
    }

    /// The id as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown to people.
    pub fn short(&self) -> String {
        let mut hex = self.to_hex();
        hex.truncate(8);
        hex
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = crate::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; ID_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| {
            crate::Error::InvalidArgument(format!("{text:?} is not a 64-digit hex id"))
        })?;
        Ok(Id(bytes))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
