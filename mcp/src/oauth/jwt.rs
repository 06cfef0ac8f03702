//! Signed client assertions for `private_key_jwt` (RFC 7523 §2.2, RFC 7521): a short-lived JWT
//! naming the client, signed with its PKCS#8 key (ES256 or RS256, by `ring`, which TLS already
//! brings). Part of [`crate::oauth`]; used by the token requests of client credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};

use super::{OAuthError, pkce};

/// How long an assertion is valid.
const LIFETIME_SECS: u64 = 300;

/// The DER of the one `PRIVATE KEY` block of a PEM text.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, OAuthError> {
    let bad = |why: &str| OAuthError::Protocol(format!("private key: {why}"));
    if pem.contains("-----BEGIN EC PRIVATE KEY-----")
        || pem.contains("-----BEGIN RSA PRIVATE KEY-----")
    {
        return Err(bad(
            "not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`",
        ));
    }
    let begin = "-----BEGIN PRIVATE KEY-----";
    let end = "-----END PRIVATE KEY-----";
    let start = pem
        .find(begin)
        .ok_or_else(|| bad("no `-----BEGIN PRIVATE KEY-----` block (PKCS#8 PEM expected)"))?
        + begin.len();
    let stop = pem[start..]
        .find(end)
        .ok_or_else(|| bad("the PEM block has no END line"))?;
    let body: String = pem[start..start + stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| bad("the PEM block is not valid base64"))
}

/// A client assertion: `iss` = `sub` = `client_id`, `aud` = `audience`, signed with `pem`.
/// `alg` is `ES256` or `RS256`; `None` takes the key's own kind.
pub(super) fn assertion(
    pem: &str,
    alg: Option<&str>,
    client_id: &str,
    audience: &str,
) -> Result<String, OAuthError> {
    let der = pkcs8_der(pem)?;
    let rng = SystemRandom::new();
    let key_error = |alg: &str| {
        OAuthError::Protocol(format!(
            "private key: not a valid PKCS#8 key for {alg} (ES256 needs a P-256 key, RS256 an RSA key of 2048 bits or more)"
        ))
    };
    enum Key {
        Ec(EcdsaKeyPair),
        Rsa(RsaKeyPair),
    }
    let key = match alg.map(str::to_ascii_uppercase).as_deref() {
        Some("ES256") => Key::Ec(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .map_err(|_| key_error("ES256"))?,
        ),
        Some("RS256") => Key::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(|_| key_error("RS256"))?),
        Some(other) => {
            return Err(OAuthError::Protocol(format!(
                "signing algorithm `{other}` is not supported (ES256 or RS256)"
            )));
        }
        None => {
            match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            {
                Ok(k) => Key::Ec(k),
                Err(_) => {
                    Key::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(|_| key_error("ES256 or RS256"))?)
                }
            }
        }
    };
    let alg = match key {
        Key::Ec(_) => "ES256",
        Key::Rsa(_) => "RS256",
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + LIFETIME_SECS,
        "jti": pkce::random(16)?,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match key {
        Key::Ec(k) => k
            .sign(&rng, input.as_bytes())
            .map_err(|_| OAuthError::Protocol("signing the client assertion failed".into()))?
            .as_ref()
            .to_vec(),
        Key::Rsa(k) => {
            let mut sig = vec![0; k.public().modulus_len()];
            k.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| OAuthError::Protocol("signing the client assertion failed".into()))?;
            sig
        }
    };
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, KeyPair, UnparsedPublicKey};

    #[test]
    fn an_es256_assertion_verifies_with_the_public_key() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(doc.as_ref())
        );
        let jwt = assertion(&pem, Some("ES256"), "client-1", "http://as.test").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "http://as.test");
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            doc.as_ref(),
            &rng,
        )
        .unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .unwrap();
        // The key's own kind when no algorithm is named.
        assert!(assertion(&pem, None, "c", "a").is_ok());
    }

    #[test]
    fn bad_keys_are_precise_errors() {
        let e = assertion("nothing", None, "c", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PKCS#8 PEM expected"), "{e}");
        let e = assertion(
            "-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----",
            None,
            "c",
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("openssl pkcs8"), "{e}");
        let e = assertion(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            Some("ES256"),
            "c",
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a valid PKCS#8 key for ES256"), "{e}");
        let e = assertion(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            Some("HS256"),
            "c",
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not supported"), "{e}");
    }
}
