//! Test signing keys and tokens, shared by the bearer unit tests, the
//! end-to-end tests and the benches: RSA-2048, EC P-256/P-384 and Ed25519
//! keys generated on the spot, their JWKS entries, tokens signed with them
//! (and deliberately forged ones), and a tiny JWKS server on std threads that
//! counts its fetches and can swap the served key set at runtime.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A private key, its algorithm and `kid`, and its public JWK.
pub struct TestKey {
    /// `kid` in the JWK and in token headers.
    pub kid: String,
    /// The algorithm tokens are signed with.
    pub alg: Algorithm,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
    /// PEM of the public key (RSA only): what an HS256 key-confusion attack signs with.
    pub public_pem: Option<String>,
    encoding: EncodingKey,
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One RSA key per process: generating them is slow.
fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa keygen"))
}

impl TestKey {
    /// The process's RSA key under `kid`, signing with `alg` (RS* or PS*).
    pub fn rsa(kid: &str, alg: Algorithm) -> TestKey {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let key = rsa_key();
        let public = key.to_public_key();
        let der = key.to_pkcs1_der().expect("pkcs1 der");
        TestKey {
            kid: kid.to_owned(),
            alg,
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": alg_name(alg), "kid": kid,
                "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()),
            }),
            public_pem: Some(public.to_pkcs1_pem(LineEnding::LF).expect("pem")),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        }
    }

    /// A fresh EC P-256 key (ES256).
    pub fn p256(kid: &str) -> TestKey {
        TestKey::ec(
            kid,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "P-256",
            Algorithm::ES256,
        )
    }

    /// A fresh EC P-384 key (ES384).
    pub fn p384(kid: &str) -> TestKey {
        TestKey::ec(
            kid,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            "P-384",
            Algorithm::ES384,
        )
    }

    fn ec(
        kid: &str,
        alg: &'static rcgen::SignatureAlgorithm,
        crv: &str,
        jws: Algorithm,
    ) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(alg).expect("ec keygen");
        let raw = pair.public_key_raw();
        let half = (raw.len() - 1) / 2;
        TestKey {
            kid: kid.to_owned(),
            alg: jws,
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": alg_name(jws), "kid": kid, "crv": crv,
                "x": b64(&raw[1..1 + half]), "y": b64(&raw[1 + half..]),
            }),
            public_pem: None,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 keygen");
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            jwk: json!({
                "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519",
                "x": b64(pair.public_key_raw()),
            }),
            public_pem: None,
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
        }
    }

    /// The header this key signs with: its `alg` and `kid`, `typ: JWT`.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h
    }

    /// Signs `claims` with the standard header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    /// Signs `claims` under `header` (which may lie about `kid`, `jku`, ...).
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign")
    }
}

/// The JWS name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// Claims valid for an hour: `iss`, `aud`, `sub`, `exp`, `iat`, plus `extra`.
pub fn claims(iss: &str, aud: &str, sub: &str, extra: Value) -> Value {
    let mut c = json!({ "iss": iss, "aud": aud, "sub": sub, "iat": now(), "exp": now() + 3600 });
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

/// A token with an arbitrary header and payload and a bogus signature.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

/// `alg: none`, no signature (the classic unsigned token).
pub fn unsigned(kid: &str, claims: &Value) -> String {
    raw_token(
        &json!({"alg": "none", "typ": "JWT", "kid": kid}),
        claims,
        b"",
    )
}

/// HS256 with `secret` as the HMAC key (key-confusion: the RSA public key's bytes).
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).expect("hs256")
}

/// A JWKS endpoint on 127.0.0.1: serves the current document at any path
/// with `Cache-Control: max-age=...`, counting the requests.
pub struct JwksServer {
    /// Its port.
    pub port: u16,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Milliseconds each answer waits before it is sent.
    delay_ms: Arc<AtomicU64>,
}

impl JwksServer {
    /// Starts serving `doc`.
    pub fn start(doc: Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind jwks server");
        let port = listener.local_addr().unwrap().port();
        let doc = Arc::new(Mutex::new(doc));
        let fetches = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (d, f, s, w) = (doc.clone(), fetches.clone(), stop.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let (d, f) = (d.clone(), f.clone());
                    let wait = std::time::Duration::from_millis(w.load(Ordering::Relaxed));
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        answer(conn, &d, &f)
                    });
                }
            }
        });
        JwksServer {
            port,
            doc,
            fetches,
            stop,
            delay_ms,
        }
    }

    /// `http://127.0.0.1:PORT/jwks`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwks", self.port)
    }

    /// Requests answered so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Makes each answer from now on wait `d` before it is sent.
    #[allow(dead_code)]
    pub fn set_delay(&self, d: std::time::Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Serves `doc` from now on.
    pub fn set(&self, doc: Value) {
        *self.doc.lock().unwrap() = doc;
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(conn: TcpStream, doc: &Mutex<Value>, fetches: &AtomicU64) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    fetches.fetch_add(1, Ordering::SeqCst);
    let body = doc.lock().unwrap().to_string();
    let mut out = &conn;
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: public, max-age=300\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
