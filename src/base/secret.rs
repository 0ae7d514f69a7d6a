//! `Secret<T>`: a value that must never reach a log line.
//!
//! Its `Debug` prints `Secret([redacted])`; the inner value is reached only
//! through [`Secret::expose`], which makes every use greppable. Also home of
//! [`constant_time_eq`] and [`constant_time_eq_32`], used wherever a MAC,
//! token or state value is compared, and of [`gen_secret`], which makes a
//! new random secret.

use std::fmt;

/// A value whose `Debug` output is redacted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself. Every call site is a place where the secret leaves its wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// 48 random bytes, base64url: comfortably above the 32-byte minimum.
pub fn gen_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut b = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Compares two 32-byte values (a session cookie's MAC) in time independent
/// of where they differ, a 64-bit word at a time: four word comparisons
/// rather than [`constant_time_eq`]'s thirty-two byte comparisons.
pub fn constant_time_eq_32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    let words = |v: &[u8; 32]| -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&v[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        })
    };
    let (a, b) = (words(a), words(b));
    let mut equal = subtle::Choice::from(1);
    for (x, y) in a.iter().zip(&b) {
        equal &= x.ct_eq(y);
    }
    equal.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn compares_32_bytes_word_by_word() {
        let a = [7u8; 32];
        assert!(constant_time_eq_32(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!constant_time_eq_32(&a, &b), "a difference in byte {i}");
        }
    }
}
