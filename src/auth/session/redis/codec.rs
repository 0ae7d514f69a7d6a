//! The stored form of a session: one version byte, then the fields in
//! `postcard` (a compact, stable serde format). A later release adds a new
//! version byte and keeps decoding the old ones; an unknown version or a
//! value that does not decode counts as no session (and is logged by the
//! caller), never as a grant.

use serde::{Deserialize, Serialize};

use crate::auth::session::{Session, SessionId};
use crate::base::identity::Identity;
use crate::base::secret::Secret;

/// The encoding of a session without extra claims.
const V1: u8 = 1;
/// Version 1's fields followed by [`Extras`]: a session with a preferred
/// username or `[headers.claims]` values. A session without them is still
/// written as version 1, so values stored by an older release encode back
/// to the same bytes.
const V2: u8 = 2;

/// Version 1 of the stored fields. Field order is part of the format: only
/// append, and only under a new version byte.
#[derive(Serialize, Deserialize)]
struct StoredV1 {
    user: String,
    email: String,
    groups: Vec<String>,
    subject: String,
    idp_session: Option<String>,
    id_token: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    created_at: u64,
    expires_at: u64,
    /// When to renew the claims; 0 = never.
    refresh_at: u64,
}

/// The fields version 2 appends to version 1's.
#[derive(Serialize, Deserialize)]
struct Extras {
    preferred_username: String,
    /// `(claim path, value)`, sorted by path.
    claims: Vec<(String, String)>,
}

/// Why a stored value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Empty value.
    #[error("empty session value")]
    Empty,
    /// Written by a newer release.
    #[error("session value has unknown encoding version {0}")]
    UnknownVersion(u8),
    /// Damaged.
    #[error("session value does not decode: {0}")]
    Corrupt(#[source] postcard::Error),
}

/// Encodes a session. Encoding a session decoded from a current-version
/// value gives the same bytes back: a refresh writes its result only if the
/// stored value still equals its starting copy, encoded again (see
/// `RedisStore::replace`). A later version must keep that comparison
/// working for values stored in an older one, or their sessions would no
/// longer be refreshed.
pub fn encode(s: &Session) -> Vec<u8> {
    let v = StoredV1 {
        user: s.identity.user.clone(),
        email: s.identity.email.clone(),
        groups: s.identity.groups.clone(),
        subject: s.subject.clone(),
        idp_session: s.idp_session.clone(),
        id_token: s.id_token.as_ref().map(|t| t.expose().clone()),
        access_token: s.access_token.as_ref().map(|t| t.expose().clone()),
        refresh_token: s.refresh_token.as_ref().map(|t| t.expose().clone()),
        created_at: s.created_at,
        expires_at: s.expires_at,
        refresh_at: s.refresh_at,
    };
    let id = &s.identity;
    let extras = (!id.preferred_username.is_empty() || !id.claims.is_empty()).then(|| Extras {
        preferred_username: id.preferred_username.clone(),
        claims: id.claims.clone(),
    });
    let mut out = vec![if extras.is_some() { V2 } else { V1 }];
    // Serialising plain strings and integers into a Vec cannot fail.
    out.extend(postcard::to_allocvec(&v).unwrap_or_default());
    if let Some(extras) = extras {
        out.extend(postcard::to_allocvec(&extras).unwrap_or_default());
    }
    out
}

/// Decodes a stored value for session `id`.
pub fn decode(id: SessionId, bytes: &[u8]) -> Result<Session, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let corrupt = DecodeError::Corrupt;
    let (v, extras) = match version {
        V1 => (
            postcard::from_bytes::<StoredV1>(rest).map_err(corrupt)?,
            None,
        ),
        V2 => {
            let (v, rest) = postcard::take_from_bytes::<StoredV1>(rest).map_err(corrupt)?;
            (
                v,
                Some(postcard::from_bytes::<Extras>(rest).map_err(corrupt)?),
            )
        }
        other => return Err(DecodeError::UnknownVersion(other)),
    };
    let extras = extras.unwrap_or(Extras {
        preferred_username: String::new(),
        claims: Vec::new(),
    });
    let identity = Identity {
        user: v.user,
        email: v.email,
        groups: v.groups,
        preferred_username: extras.preferred_username,
        claims: extras.claims,
    };
    Ok(Session {
        id,
        headers: identity.headers(),
        identity,
        subject: v.subject,
        idp_session: v.idp_session,
        id_token: v.id_token.map(Secret::new),
        access_token: v.access_token.map(Secret::new),
        refresh_token: v.refresh_token.map(Secret::new),
        created_at: v.created_at,
        expires_at: v.expires_at,
        refresh_at: v.refresh_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        let identity = Identity {
            user: "alice".into(),
            email: "alice@example.com".into(),
            groups: vec!["admins".into(), "dev".into()],
            ..Identity::default()
        };
        Session {
            id: SessionId([7; 32]),
            headers: identity.headers(),
            identity,
            subject: "sub-1".into(),
            idp_session: Some("sid-1".into()),
            id_token: Some(Secret::new("a.b.c".into())),
            access_token: Some(Secret::new("at".into())),
            refresh_token: None,
            created_at: 1_700_000_000,
            expires_at: 1_700_043_200,
            refresh_at: 1_700_003_600,
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(bytes[0], V1);
        let d = decode(s.id, &bytes).unwrap();
        assert_eq!(d.identity.user, "alice");
        assert_eq!(d.identity.groups, vec!["admins", "dev"]);
        assert_eq!(d.idp_session.as_deref(), Some("sid-1"));
        assert_eq!(
            d.id_token.as_ref().map(|t| t.expose().as_str()),
            Some("a.b.c")
        );
        assert!(d.refresh_token.is_none());
        assert_eq!(d.expires_at, s.expires_at);
        assert_eq!(d.refresh_at, s.refresh_at);
        assert_eq!(
            encode(&d),
            bytes,
            "decoding then encoding gives the stored bytes back (the refresh's compare-and-set relies on it)"
        );
    }

    /// Bytes written by this version must stay readable by every later one.
    #[test]
    fn version_1_fixture_still_decodes() {
        let fixture = encode(&sample());
        let d = decode(SessionId([7; 32]), &fixture).unwrap();
        assert_eq!(d.subject, "sub-1");
        assert!(fixture.len() < 120, "compact: {} bytes", fixture.len());
    }

    /// A session with a preferred username or extra claims is written as
    /// version 2 and reads back whole; re-encoding gives the same bytes.
    #[test]
    fn extra_claims_round_trip_as_version_2() {
        let mut s = sample();
        s.identity.preferred_username = "alice.a".into();
        s.identity.claims = vec![
            ("name".into(), "Alice A".into()),
            ("org.id".into(), "t-42".into()),
        ];
        let bytes = encode(&s);
        assert_eq!(bytes[0], V2);
        let d = decode(s.id, &bytes).unwrap();
        assert_eq!(d.identity, s.identity);
        assert_eq!(d.headers.preferred_username.to_str().unwrap(), "alice.a");
        assert_eq!(&*d.headers.claims[1].0, "org.id");
        assert_eq!(d.headers.claims[1].1.to_str().unwrap(), "t-42");
        assert_eq!(encode(&d), bytes);
        for n in 1..bytes.len() {
            assert!(decode(s.id, &bytes[..n]).is_err(), "truncated at {n}");
        }
        // Without extras, still version 1 (older releases keep reading it).
        assert_eq!(encode(&sample())[0], V1);
    }

    #[test]
    fn hostile_values_are_errors_not_panics() {
        let id = SessionId([0; 32]);
        assert!(matches!(decode(id, &[]), Err(DecodeError::Empty)));
        assert!(matches!(
            decode(id, &[9, 1, 2]),
            Err(DecodeError::UnknownVersion(9))
        ));
        let good = encode(&sample());
        for n in 1..good.len() {
            assert!(decode(id, &good[..n]).is_err(), "truncated at {n}");
        }
        let mut huge = vec![V1];
        huge.extend([0xff; 16]);
        assert!(decode(id, &huge).is_err());
    }
}
