//! TRON addresses: 21 bytes (`0x41` + 20), shown as 42 hex characters or as base58check (`T...`).

use sha2::{Digest, Sha256};

/// The version byte of every mainnet address.
pub const ADDRESS_PREFIX: u8 = 0x41;

/// Why a text is not a TRON address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not hexadecimal.
    #[error("address {0:?} is not hex")]
    NotHex(String),
    /// Neither 20 nor 21 bytes.
    #[error("address {0:?} has {1} bytes, expected 20 or 21")]
    BadLength(String, usize),
    /// Not base58, or its checksum does not match.
    #[error("address {0:?} is not a valid base58check address")]
    BadBase58(String),
}

/// Decodes a hex string (no `0x`) into bytes.
pub fn hex_to_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?))
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Addresses each thread remembers the base58 form of: a few MB at most.
const RECENT_ADDRESSES: usize = 20_000;

thread_local! {
    static RECENT: std::cell::RefCell<std::collections::HashMap<[u8; 21], String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Lowercase hex of bytes.
pub fn bytes_to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Base58check of a 21-byte address. The same addresses come back all the time (USDT's
/// contract is in most events, exchanges' wallets in many), and encoding one (two SHA-256 and a
/// base58 division loop) was a third of the decoder's time (callgrind, docs/BENCHMARKS.md), so
/// each thread keeps the recent ones.
pub fn base58check(address21: &[u8; 21]) -> String {
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some(known) = recent.get(address21) {
            return known.clone();
        }
        let encoded = encode_base58check(address21);
        if recent.len() >= RECENT_ADDRESSES {
            recent.clear();
        }
        recent.insert(*address21, encoded.clone());
        encoded
    })
}

fn encode_base58check(address21: &[u8; 21]) -> String {
    let first = Sha256::digest(address21);
    let second = Sha256::digest(first);
    let mut payload = Vec::with_capacity(25);
    payload.extend_from_slice(address21);
    payload.extend_from_slice(&second[..4]);
    bs58::encode(payload).into_string()
}

/// Base58 form of a hex address, with (`41...`, 42 chars) or without (20 bytes, as in logs) the
/// `41` prefix. A 0x prefix is tolerated.
pub fn hex_to_base58(hex: &str) -> Result<String, AddressError> {
    let trimmed = hex.strip_prefix("0x").unwrap_or(hex);
    let bytes = hex_to_bytes(trimmed).ok_or_else(|| AddressError::NotHex(hex.to_string()))?;
    let mut address = [0u8; 21];
    match bytes.len() {
        21 => address.copy_from_slice(&bytes),
        20 => {
            address[0] = ADDRESS_PREFIX;
            address[1..].copy_from_slice(&bytes);
        }
        n => return Err(AddressError::BadLength(hex.to_string(), n)),
    }
    Ok(base58check(&address))
}

/// Base58 form of an address as a node may print it in a transaction: hex (`41...`, the default)
/// or already base58check (`T...`, when asked with `visible=true`), whose checksum is verified.
pub fn any_to_base58(address: &str) -> Result<String, AddressError> {
    if address.len() == 34 && address.starts_with('T') {
        let bad = || AddressError::BadBase58(address.to_string());
        let bytes = bs58::decode(address).into_vec().map_err(|_| bad())?;
        let payload: &[u8; 21] = bytes
            .get(..21)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        if bytes.len() != 25 || base58check(payload) != address {
            return Err(bad());
        }
        return Ok(address.to_string());
    }
    hex_to_base58(address)
}

/// Base58 form of an address held in a 32-byte indexed topic (left-padded, no `41`).
pub fn topic_to_base58(topic: &str) -> Result<String, AddressError> {
    let bytes = hex_to_bytes(topic).ok_or_else(|| AddressError::NotHex(topic.to_string()))?;
    if bytes.len() != 32 {
        return Err(AddressError::BadLength(topic.to_string(), bytes.len()));
    }
    let mut address = [0u8; 21];
    address[0] = ADDRESS_PREFIX;
    address[1..].copy_from_slice(&bytes[12..]);
    Ok(base58check(&address))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USDT_HEX: &str = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c";
    const USDT_BASE58: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

    #[test]
    fn remembered_addresses_encode_as_fresh_ones() {
        let mut address = [0u8; 21];
        address[0] = ADDRESS_PREFIX;
        for i in 0..(RECENT_ADDRESSES as u32 + 10) {
            address[17..].copy_from_slice(&i.to_be_bytes());
            // Twice: once encoded, once remembered (and past the bound, after a clear).
            assert_eq!(base58check(&address), encode_base58check(&address));
            assert_eq!(base58check(&address), encode_base58check(&address));
        }
        assert_eq!(hex_to_bytes("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_to_bytes("0g"), None);
        assert_eq!(hex_to_bytes("abc"), None);
    }

    #[test]
    fn usdt_hex_with_prefix_is_its_base58() {
        assert_eq!(hex_to_base58(USDT_HEX).as_deref(), Ok(USDT_BASE58));
    }

    #[test]
    fn log_address_without_prefix_is_the_same_address() {
        assert_eq!(hex_to_base58(&USDT_HEX[2..]).as_deref(), Ok(USDT_BASE58));
    }

    #[test]
    fn indexed_topic_address_is_decoded() {
        let topic = format!("{}{}", "0".repeat(24), &USDT_HEX[2..]);
        assert_eq!(topic_to_base58(&topic).as_deref(), Ok(USDT_BASE58));
    }

    #[test]
    fn base58_input_is_checked_and_kept() {
        assert_eq!(any_to_base58(USDT_BASE58).as_deref(), Ok(USDT_BASE58));
        assert_eq!(any_to_base58(USDT_HEX).as_deref(), Ok(USDT_BASE58));
        let broken = USDT_BASE58.replace('6', "7");
        assert!(matches!(
            any_to_base58(&broken),
            Err(AddressError::BadBase58(_))
        ));
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert!(matches!(hex_to_base58("zz"), Err(AddressError::NotHex(_))));
        assert!(matches!(
            hex_to_base58("4141"),
            Err(AddressError::BadLength(_, 2))
        ));
    }
}
