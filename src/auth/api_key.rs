//! `[Api] keys`: the bearer keys a backend presents on `/api/*`, compared in constant time.

use hyper::HeaderMap;
use hyper::header;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No `Authorization: Bearer …` header: 401.
    Missing,
    /// A key that is not one of ours: 403.
    Wrong,
}

/// The configured keys, held as SHA-256 digests: comparing digests takes the same time
/// whatever the presented key's length, and no key sits in memory in the clear.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> ApiKeys {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    /// No keys configured: the origin check guards the API instead.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), KeyRefusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .filter(|k| !k.is_empty())
            .ok_or(KeyRefusal::Missing)?;
        let d = digest(presented.as_bytes());
        // Every key is compared, so the time taken does not say which one matched.
        let mut found = subtle::Choice::from(0);
        for k in &self.digests {
            found |= k.ct_eq(&d);
        }
        if bool::from(found) {
            Ok(())
        } else {
            Err(KeyRefusal::Wrong)
        }
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn right_wrong_and_missing() {
        let k = ApiKeys::new(&["s3cret".into(), "other".into()]);
        assert_eq!(k.check(&auth("Bearer s3cret")), Ok(()));
        assert_eq!(k.check(&auth("bearer   other ")), Ok(()));
        assert_eq!(k.check(&auth("Bearer s3cre")), Err(KeyRefusal::Wrong));
        assert_eq!(k.check(&auth("Bearer s3cret2")), Err(KeyRefusal::Wrong));
        assert_eq!(k.check(&auth("Basic czNjcmV0")), Err(KeyRefusal::Missing));
        assert_eq!(k.check(&auth("Bearer ")), Err(KeyRefusal::Missing));
        assert_eq!(k.check(&HeaderMap::new()), Err(KeyRefusal::Missing));
        assert!(!format!("{k:?}").contains("s3cret"));
    }
}
