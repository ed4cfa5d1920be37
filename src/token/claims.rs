//! The payload of an access token, parsed once, checked against the
//! verifier's configuration, and kept as [`VerifiedClaims`].

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{TokenError, VerifiedClaims};

/// The claims a verifier reads, as they appear in the payload. Every field is
/// optional here so that a missing claim is reported by name, not as a
/// deserialization error.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawClaims {
    #[serde(default)]
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) oid: Option<String>,
    #[serde(default)]
    pub(crate) roles: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) permissions: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) iss: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) aud: Option<Vec<String>>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<u64>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
}

/// The claim names [`RawClaims::has`] knows, for `required_claims`.
pub(crate) const KNOWN_CLAIMS: [&str; 11] = [
    "sub",
    "oid",
    "roles",
    "permissions",
    "email",
    "scopes",
    "iss",
    "aud",
    "exp",
    "nbf",
    "jti",
];

impl RawClaims {
    /// Parses a decoded payload; an ill-typed claim is named in the error.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, TokenError> {
        // A derived struct would also accept a JSON array, by position.
        if payload.trim_ascii_start().first() != Some(&b'{') {
            return Err(TokenError::Malformed);
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        match serde_path_to_error::deserialize::<_, RawClaims>(&mut de) {
            Ok(raw) => Ok(raw),
            Err(e) => {
                let claim = match e.path().iter().next() {
                    Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
                    _ => None,
                };
                match claim {
                    // A claim with the wrong type: name it.
                    Some(claim) if !e.inner().is_syntax() && !e.inner().is_eof() => {
                        Err(TokenError::Claims {
                            claim,
                            problem: "ill-typed".into(),
                        })
                    }
                    _ => Err(TokenError::Malformed),
                }
            }
        }
    }

    /// Whether the claim `name` (one of [`KNOWN_CLAIMS`]) is present.
    pub(crate) fn has(&self, name: &str) -> bool {
        match name {
            "sub" => self.sub.is_some(),
            "oid" => self.oid.is_some(),
            "roles" => self.roles.is_some(),
            "permissions" => self.permissions.is_some(),
            "email" => self.email.is_some(),
            "scopes" => self.scopes.is_some(),
            "iss" => self.iss.is_some(),
            "aud" => self.aud.is_some(),
            "exp" => self.exp.is_some(),
            "nbf" => self.nbf.is_some(),
            "jti" => self.jti.is_some(),
            _ => false,
        }
    }

    /// The verified claims, once every check passed. `exp` must be present
    /// (checked before).
    pub(crate) fn into_verified(self, expires_at: u64) -> VerifiedClaims {
        VerifiedClaims {
            subject: self.sub.unwrap_or_default(),
            organization: self.oid,
            roles: self.roles.unwrap_or_default(),
            permissions: self.permissions.unwrap_or_default(),
            email: self.email,
            scopes: self.scopes.unwrap_or_default(),
            issuer: self.iss.unwrap_or_default(),
            audience: self.aud.unwrap_or_default(),
            expires_at,
            token_id: self.jti,
        }
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(one)) => Some(vec![one]),
        Some(OneOrMany::Many(many)) => Some(many),
    })
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, an integer or a
/// non-negative finite number (fractions are dropped).
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Seconds;
    impl Visitor<'_> for Seconds {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("seconds since the epoch")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("a negative date"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && (0.0..1.8e19).contains(&v) {
                // Finite, non-negative and below `u64::MAX`: the cast only
                // drops the fraction.
                Ok(Some(v as u64))
            } else {
                Err(E::custom("not a date"))
            }
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RawClaims, TokenError> {
        RawClaims::parse(json.as_bytes())
    }

    #[test]
    fn aud_as_a_string_is_a_one_element_list() {
        let raw = parse(r#"{"aud": "skc_1", "exp": 10}"#).unwrap();
        assert_eq!(raw.aud, Some(vec!["skc_1".to_owned()]));
    }

    #[test]
    fn aud_as_an_array_keeps_every_audience() {
        let raw = parse(r#"{"aud": ["skc_1", "api"], "exp": 10}"#).unwrap();
        assert_eq!(raw.aud, Some(vec!["skc_1".to_owned(), "api".to_owned()]));
    }

    #[test]
    fn aud_of_another_type_is_named() {
        let e = parse(r#"{"aud": 7}"#).unwrap_err();
        assert_eq!(
            e,
            TokenError::Claims {
                claim: "aud".into(),
                problem: "ill-typed".into()
            }
        );
        assert_eq!(e.to_string(), "claim `aud` is ill-typed");
    }

    #[test]
    fn missing_sub_is_an_empty_subject_m2m() {
        let raw = parse(r#"{"oid": "org_1", "scopes": ["read"], "exp": 10}"#).unwrap();
        assert!(!raw.has("sub"));
        let v = raw.into_verified(10);
        assert_eq!(v.subject, "");
        assert_eq!(v.organization.as_deref(), Some("org_1"));
        assert_eq!(v.scopes, ["read"]);
        assert!(v.roles.is_empty() && v.permissions.is_empty());
    }

    #[test]
    fn scalekit_claims_map_to_verified_claims() {
        let raw = parse(
            r#"{"sub": "usr_1", "oid": "org_1", "roles": ["admin"], "permissions": ["a:b"],
                "email": "a@example.com", "iss": "https://env.example", "aud": ["skc_1"],
                "exp": 1700000000, "nbf": 1600000000, "jti": "tkn_1", "extra": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!(raw.nbf, Some(1_600_000_000));
        let v = raw.into_verified(1_700_000_000);
        assert_eq!(v.subject, "usr_1");
        assert_eq!(v.email.as_deref(), Some("a@example.com"));
        assert_eq!(v.token_id.as_deref(), Some("tkn_1"));
        let claims = v.claims();
        assert_eq!(claims.organization.as_deref(), Some("org_1"));
        assert_eq!(claims.roles, ["admin"]);
        assert_eq!(claims.permissions, ["a:b"]);
    }

    #[test]
    fn dates_accept_integers_and_fractions_and_refuse_negatives() {
        assert_eq!(parse(r#"{"exp": 12.9}"#).unwrap().exp, Some(12));
        assert!(matches!(
            parse(r#"{"exp": -1}"#),
            Err(TokenError::Claims { claim, .. }) if claim == "exp"
        ));
        assert!(matches!(
            parse(r#"{"exp": "soon"}"#),
            Err(TokenError::Claims { claim, .. }) if claim == "exp"
        ));
        assert_eq!(parse(r#"{"exp": null}"#).unwrap().exp, None);
    }

    #[test]
    fn ill_typed_roles_are_named_and_not_json_is_malformed() {
        assert!(matches!(
            parse(r#"{"roles": "admin"}"#),
            Err(TokenError::Claims { claim, .. }) if claim == "roles"
        ));
        assert_eq!(parse("[1, 2]").unwrap_err(), TokenError::Malformed);
        assert_eq!(parse(r#" ["usr_1"]"#).unwrap_err(), TokenError::Malformed);
        assert_eq!(parse("{\"sub\": ").unwrap_err(), TokenError::Malformed);
    }
}
