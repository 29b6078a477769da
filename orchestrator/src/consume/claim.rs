//! The claim protocol: several orchestrators on one bucket process each order revision
//! exactly once.
//!
//! A claim is a conditional PUT (`If-None-Match: *`) of `claims/{station}/{order}[.revN]`
//! holding `{"owner", "claimed_unix_ms"}`. The PUT that creates it wins. A claim of our
//! own owner name (same host after a restart) is ours; one of another owner older than
//! the TTL with still no result belongs to a replica that died mid-order and is taken over
//! through a second conditional PUT of `{claim}.takeover-{claimed_unix_ms}`: the key is
//! derived from the stale claim, so exactly one contender wins it.

use serde::{Deserialize, Serialize};

use super::{Consumer, now_ms};
use crate::store::StoreError;

/// The body of a claim object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub owner: String,
    pub claimed_unix_ms: i64,
}

/// What to do about a claim someone already wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Ours (written before a restart): go ahead.
    Ours,
    /// Another owner's and fresh: leave the order to them for now.
    HeldByOther { owner: String },
    /// Another owner's and stale: try to win this takeover key.
    TakeOver {
        key: String,
        owner: String,
        age_ms: i64,
    },
}

/// Decides about the claim at `key` whose body is `body` (`None`: unreadable) and whose
/// object was last modified at `last_modified_ms`.
pub fn judge(
    key: &str,
    body: Option<&[u8]>,
    last_modified_ms: Option<i64>,
    me: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Existing {
    let claim = body.and_then(|b| serde_json::from_slice::<Claim>(b).ok());
    let owner = claim
        .as_ref()
        .map(|c| c.owner.clone())
        .unwrap_or_else(|| "?".to_owned());
    if owner == me {
        return Existing::Ours;
    }
    let claimed_ms = claim
        .map(|c| c.claimed_unix_ms)
        .or(last_modified_ms)
        .unwrap_or(0);
    let age_ms = now_ms - claimed_ms;
    if age_ms < ttl_ms {
        return Existing::HeldByOther { owner };
    }
    Existing::TakeOver {
        key: format!("{key}.takeover-{claimed_ms}"),
        owner,
        age_ms,
    }
}

/// What a store does with `If-None-Match: *` on an object that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalPut {
    /// Refuses the write (412): claims work.
    Honoured,
    /// Overwrites the object: every replica would win every claim.
    Ignored,
}

impl Consumer {
    /// Writes a probe object twice with `If-None-Match: *` (under `claims/`, removed
    /// after) to learn whether the store honours it. Claims depend on it; a store that
    /// ignores it (some S3 implementations do) must be refused while `claim = true`.
    pub async fn check_conditional_put(&self) -> Result<ConditionalPut, StoreError> {
        let layout = &self.settings.layout;
        let key = format!(
            "{}{}/.probe-{}-{}",
            layout.results_prefix,
            oa_contract::CLAIMS_DIR,
            self.settings.owner.replace('/', "_"),
            now_ms()
        );
        let first = self
            .store
            .put_if_absent(&layout.results_bucket, &key, b"1".to_vec())
            .await?;
        let second = self
            .store
            .put_if_absent(&layout.results_bucket, &key, b"2".to_vec())
            .await?;
        let _ = self.store.delete(&layout.results_bucket, &key).await;
        Ok(if first && !second {
            ConditionalPut::Honoured
        } else {
            ConditionalPut::Ignored
        })
    }

    /// `true` when this orchestrator owns result `revision` of the order now.
    pub(super) async fn claim(
        &self,
        station: &str,
        order: &str,
        revision: u32,
    ) -> Result<bool, StoreError> {
        let layout = &self.settings.layout;
        let key = layout.claim_key(station, order, revision)?;
        let body = serde_json::to_vec(&Claim {
            owner: self.settings.owner.clone(),
            claimed_unix_ms: now_ms(),
        })
        .expect("a claim serialises");
        let ttl_ms = self.settings.claim_ttl.as_millis() as i64;
        // A takeover whose taker died too is itself stale: it is taken over under a key
        // derived from it, and so on; the chain is short (one link per dead replica).
        let mut key = key;
        for _ in 0..MAX_TAKEOVERS {
            if self
                .store
                .put_if_absent(&layout.results_bucket, &key, body.clone())
                .await?
            {
                return Ok(true);
            }
            let Some(existing) = self.store.get(&layout.results_bucket, &key).await? else {
                return Ok(false);
            };
            match judge(
                &key,
                Some(&existing.body),
                existing.last_modified_ms,
                &self.settings.owner,
                now_ms(),
                ttl_ms,
            ) {
                Existing::Ours => {
                    // Renewed at every attempt, so that an order retried for longer than
                    // `claim_ttl` (a VLM that is down) is not taken over while we work.
                    if let Err(e) = self
                        .store
                        .put(&layout.results_bucket, &key, body, "application/json")
                        .await
                    {
                        tracing::debug!(station, order, "renewing our claim: {e}");
                    }
                    return Ok(true);
                }
                Existing::HeldByOther { .. } => return Ok(false),
                Existing::TakeOver {
                    key: next,
                    owner,
                    age_ms,
                } => {
                    tracing::info!(
                        station,
                        order,
                        "claim by {owner} is {} s old with no result; taking it over",
                        age_ms / 1000
                    );
                    key = next;
                }
            }
        }
        Ok(false)
    }
}

/// Dead takers in a row after which an order is left for a person to look at.
const MAX_TAKEOVERS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(owner: &str, at: i64) -> Vec<u8> {
        serde_json::to_vec(&Claim {
            owner: owner.into(),
            claimed_unix_ms: at,
        })
        .unwrap()
    }

    #[test]
    fn our_own_claim_is_ours_whatever_its_age() {
        let b = body("me", 0);
        assert_eq!(
            judge("k", Some(&b), None, "me", 10_000_000, 1000),
            Existing::Ours
        );
    }

    #[test]
    fn a_fresh_claim_of_another_is_left_alone() {
        let b = body("other", 9_500);
        assert_eq!(
            judge("k", Some(&b), None, "me", 10_000, 1000),
            Existing::HeldByOther {
                owner: "other".into()
            }
        );
    }

    #[test]
    fn a_stale_claim_is_taken_over_under_one_key_for_every_contender() {
        let b = body("other", 1_000);
        let a = judge("claims/s/o", Some(&b), None, "me", 5_000, 1000);
        let c = judge("claims/s/o", Some(&b), None, "you", 7_000, 1000);
        let (Existing::TakeOver { key: ka, .. }, Existing::TakeOver { key: kc, .. }) = (a, c)
        else {
            panic!("both should try the takeover");
        };
        assert_eq!(ka, "claims/s/o.takeover-1000");
        assert_eq!(ka, kc, "contenders race for the same key");
    }

    #[test]
    fn an_unreadable_claim_ages_by_its_last_modified() {
        assert!(matches!(
            judge("k", Some(b"garbage"), Some(9_900), "me", 10_000, 1000),
            Existing::HeldByOther { .. }
        ));
        assert!(matches!(
            judge("k", None, Some(1_000), "me", 10_000, 1000),
            Existing::TakeOver { .. }
        ));
    }
}
