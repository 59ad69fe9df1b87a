//! API tokens: minting, checking, revoking. A token reads `hive_<id>_<secret>`: the id finds the
//! stored record, and the secret's SHA-256 must match the stored hash, compared in constant time.
//! The store never holds the secret, so its file is no key to the hub.
//!
//! The records are kept in memory as well (a std `RwLock`, no await held across it): a request
//! checks its token without touching SQLite. Creating and revoking write through to the store.
//!
//! A token may be given a lifetime when it is made (`expires_in_s`); from its `expires_at` on it
//! is refused as a revoked one is, but with its own answer (`token_expired`), so that its holder
//! knows to get a new one rather than to look for a mistake.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hive_core::Timestamp;
use hive_store::{StoreError, StoredToken, TokenStore};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Principal, Role, TokenEnd};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub role: Role,
    /// Agent tokens: the capabilities it may offer, the swarms it may join (`None`: any).
    pub capabilities: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    /// Seconds from its making after which it is refused (`None`: never).
    pub expires_in_s: Option<u64>,
}

/// Why [`Tokens::verify`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Malformed, unknown, revoked, or its secret does not match: nothing more is said.
    Invalid,
    /// The right secret, past its expiry.
    Expired { name: String, at: Timestamp },
}

pub struct Tokens {
    store: Arc<dyn TokenStore>,
    by_id: RwLock<HashMap<String, StoredToken>>,
    /// Bumped by every revocation, so connections opened with a token can look again.
    revocations: tokio::sync::watch::Sender<u64>,
}

const PREFIX: &str = "hive_";
pub const MAX_NAME_LEN: usize = 64;
use hive_proto::api::MAX_TOKEN_LIFETIME_S;

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A token's name: 1 to [`MAX_NAME_LEN`] letters, digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// True from the token's expiry on.
fn expired(token: &StoredToken, now: Timestamp) -> bool {
    token.expires_at.is_some_and(|at| at <= now)
}

/// Equal bytes, in a time that does not depend on where they first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    pub fn load(store: Arc<dyn TokenStore>) -> Result<Tokens, StoreError> {
        let by_id = store
            .list()?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        Ok(Tokens {
            store,
            by_id: RwLock::new(by_id),
            revocations: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Mints a token; the text returned is the only copy of its secret.
    pub fn create(
        &self,
        grant: Grant,
        now: Timestamp,
    ) -> Result<(String, StoredToken), TokenError> {
        if !valid_name(&grant.name) {
            return Err(TokenError::Invalid {
                field: "name",
                message: format!("1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"),
            });
        }
        if grant.role != Role::Agent && (grant.capabilities.is_some() || grant.groups.is_some()) {
            let field = if grant.capabilities.is_some() {
                "capabilities"
            } else {
                "groups"
            };
            return Err(TokenError::Invalid {
                field,
                message: "only an agent token is limited to capabilities and groups".into(),
            });
        }
        for (field, list) in [
            ("capabilities", &grant.capabilities),
            ("groups", &grant.groups),
        ] {
            for (i, item) in list.iter().flatten().enumerate() {
                if let Err(e) = hive_core::Capability::parse(item, field) {
                    return Err(TokenError::Invalid {
                        field,
                        message: format!("item {i}: {}", e.reason),
                    });
                }
            }
        }
        if let Some(seconds) = grant.expires_in_s
            && !(1..=MAX_TOKEN_LIFETIME_S).contains(&seconds)
        {
            return Err(TokenError::Invalid {
                field: "expires_in_s",
                message: format!(
                    "{seconds} is outside 1 to {MAX_TOKEN_LIFETIME_S} seconds (ten years); leave it \
                     out for a token that does not expire"
                ),
            });
        }
        let id = Uuid::new_v4().simple().to_string();
        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let record = StoredToken {
            id: id.clone(),
            name: grant.name,
            role: grant.role.as_str().into(),
            capabilities: grant.capabilities,
            groups: grant.groups,
            secret_hash: hash(&secret),
            created_at: now,
            revoked_at: None,
            expires_at: grant.expires_in_s.map(|s| now.plus_ms(s * 1000)),
        };
        self.store.insert(&record)?;
        self.write().insert(id.clone(), record.clone());
        Ok((format!("{PREFIX}{id}_{secret}"), record))
    }

    /// Who holds `token`, if it is a live token of this hub at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Principal, Refused> {
        let (id, secret) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .ok_or(Refused::Invalid)?;
        let by_id = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let record = by_id.get(id).ok_or(Refused::Invalid)?;
        if record.revoked_at.is_some() || !same(&hash(secret), &record.secret_hash) {
            return Err(Refused::Invalid);
        }
        // Only after the secret matched: whether a token expired is its holder's business.
        if let Some(at) = record.expires_at.filter(|_| expired(record, now)) {
            return Err(Refused::Expired {
                name: record.name.clone(),
                at,
            });
        }
        Ok(Principal {
            token_id: id.into(),
            name: record.name.as_str().into(),
            role: record.role.parse().map_err(|_| Refused::Invalid)?,
            capabilities: record.capabilities.clone(),
            groups: record.groups.clone(),
        })
    }

    pub fn list(&self) -> Vec<StoredToken> {
        let mut all: Vec<_> = self
            .by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        all
    }

    /// Returns false when no live token has that name.
    pub fn revoke(&self, name: &str, now: Timestamp) -> Result<bool, StoreError> {
        if !self.store.revoke(name, now)? {
            return Ok(false);
        }
        for record in self.write().values_mut() {
            if record.name == name {
                record.revoked_at = Some(now);
            }
        }
        self.revocations.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Where the token with this id stands at `now`: live, with its expiry if it has one, or
    /// ended (a token unknown to this hub reads as revoked).
    pub fn standing(&self, id: &str, now: Timestamp) -> Result<Option<Timestamp>, TokenEnd> {
        let by_id = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        match by_id.get(id) {
            Some(t) if t.revoked_at.is_some() => Err(TokenEnd::Revoked),
            Some(t) if expired(t, now) => Err(TokenEnd::Expired),
            Some(t) => Ok(t.expires_at),
            None => Err(TokenEnd::Revoked),
        }
    }

    /// Changes after each revocation.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// True when an admin token is live at `now`.
    pub fn has_admin(&self, now: Timestamp) -> bool {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|t| t.role == Role::Admin.as_str() && t.revoked_at.is_none() && !expired(t, now))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, StoredToken>> {
        self.by_id.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The store's behaviour as far as `Tokens` needs it (the SQLite one is tested in its crate).
    #[derive(Default)]
    struct Memory(Mutex<Vec<StoredToken>>);

    impl TokenStore for Memory {
        fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
            let mut all = self.0.lock().unwrap();
            if all.iter().any(|t| t.name == token.name) {
                return Err(StoreError::Duplicate(token.name.clone()));
            }
            all.push(token.clone());
            Ok(())
        }
        fn list(&self) -> Result<Vec<StoredToken>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn get(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
            Ok(self.0.lock().unwrap().iter().find(|t| t.id == id).cloned())
        }
        fn revoke(&self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
            let mut all = self.0.lock().unwrap();
            let live = all
                .iter_mut()
                .find(|t| t.name == name && t.revoked_at.is_none());
            Ok(live.map(|t| t.revoked_at = Some(at)).is_some())
        }
    }

    fn grant(name: &str, role: Role) -> Grant {
        Grant {
            name: name.into(),
            role,
            capabilities: None,
            groups: None,
            expires_in_s: None,
        }
    }

    #[test]
    fn a_token_verifies_until_revoked_and_a_guess_never_does() {
        let tokens = Tokens::load(Arc::new(Memory::default())).unwrap();
        let (text, record) = tokens
            .create(grant("ci", Role::Client), Timestamp(1))
            .unwrap();
        assert!(text.starts_with("hive_") && !record.secret_hash.is_empty());
        let who = tokens.verify(&text, Timestamp(1)).unwrap();
        assert_eq!((&*who.name, who.role), ("ci", Role::Client));
        // The same token with its last hex digit changed.
        let last = if text.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &text[..text.len() - 1]);
        for wrong in [forged.as_str(), "hive_nope_nope", ""] {
            assert_eq!(tokens.verify(wrong, Timestamp(1)), Err(Refused::Invalid));
        }
        assert!(tokens.revoke("ci", Timestamp(2)).unwrap());
        assert_eq!(tokens.verify(&text, Timestamp(2)), Err(Refused::Invalid));
        assert_eq!(
            tokens.standing(&record.id, Timestamp(2)),
            Err(TokenEnd::Revoked)
        );
        assert!(
            !tokens.revoke("ci", Timestamp(3)).unwrap(),
            "already revoked"
        );
    }

    #[test]
    fn names_are_checked_and_unique_and_scopes_are_for_agents() {
        let tokens = Tokens::load(Arc::new(Memory::default())).unwrap();
        assert!(matches!(
            tokens.create(grant("no spaces", Role::Read), Timestamp(1)),
            Err(TokenError::Invalid { field: "name", .. })
        ));
        tokens.create(grant("a", Role::Read), Timestamp(1)).unwrap();
        assert!(matches!(
            tokens.create(grant("a", Role::Admin), Timestamp(1)),
            Err(TokenError::Store(StoreError::Duplicate(_)))
        ));
        let scoped = Grant {
            capabilities: Some(vec!["x".into()]),
            ..grant("b", Role::Client)
        };
        assert!(matches!(
            tokens.create(scoped, Timestamp(1)),
            Err(TokenError::Invalid {
                field: "capabilities",
                ..
            })
        ));
        let bad_group = Grant {
            groups: Some(vec!["ok".into(), "not ok!".into()]),
            ..grant("c", Role::Agent)
        };
        match tokens.create(bad_group, Timestamp(1)) {
            Err(TokenError::Invalid { field, message }) => {
                assert_eq!(field, "groups");
                assert!(message.starts_with("item 1: "), "{message}");
            }
            other => panic!("a group outside the capability rules was taken: {other:?}"),
        }
        assert!(!tokens.has_admin(Timestamp(1)));
    }

    #[test]
    fn a_token_with_a_lifetime_is_refused_from_its_expiry_on_and_only_then() {
        let tokens = Tokens::load(Arc::new(Memory::default())).unwrap();
        let start = Timestamp(1_000);
        let lasting = Grant {
            expires_in_s: Some(60),
            ..grant("admin-for-a-minute", Role::Admin)
        };
        let (text, record) = tokens.create(lasting, start).unwrap();
        let expiry = Timestamp(61_000);
        assert_eq!(record.expires_at, Some(expiry));
        let just_before = Timestamp(expiry.0 - 1);
        assert!(tokens.verify(&text, just_before).is_ok());
        assert!(tokens.has_admin(just_before));
        assert_eq!(tokens.standing(&record.id, just_before), Ok(Some(expiry)));
        assert_eq!(
            tokens.verify(&text, expiry),
            Err(Refused::Expired {
                name: "admin-for-a-minute".into(),
                at: expiry
            })
        );
        assert_eq!(tokens.standing(&record.id, expiry), Err(TokenEnd::Expired));
        assert!(
            !tokens.has_admin(expiry),
            "an expired admin token is no admin"
        );
        // The wrong secret of an expired token says nothing about the expiry.
        let last = if text.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &text[..text.len() - 1]);
        assert_eq!(tokens.verify(&forged, expiry), Err(Refused::Invalid));
        // A lifetime of none, or of more than ten years, is refused naming the field.
        for seconds in [0, MAX_TOKEN_LIFETIME_S + 1] {
            let grant = Grant {
                expires_in_s: Some(seconds),
                ..grant("bad", Role::Read)
            };
            assert!(matches!(
                tokens.create(grant, start),
                Err(TokenError::Invalid {
                    field: "expires_in_s",
                    ..
                })
            ));
        }
    }
}
