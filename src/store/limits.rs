//! Counters that hold across every process sharing the database.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;

use super::sql::{Db, sql};
use super::{Limit, LimitStore, Result, SqlStore};
use crate::domain::message::Timestamp;

#[async_trait]
impl<D: Db> LimitStore for SqlStore<D> {
    async fn rate_limit(
        &self,
        key: &str,
        now: Timestamp,
        interval_ms: i64,
        period_ms: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.write().await?;
        // The theoretical arrival time moves on by one interval per admitted
        // event, from now at the earliest; refused if that passes the period.
        let admitted: Option<i64> = sql::<D>(
            "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (key) DO UPDATE \
             SET tat = CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3 \
             WHERE CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3 - $2 <= $4 \
             RETURNING tat",
        )
        .bind(key)
        .bind(now.millis())
        .bind(interval_ms)
        .bind(period_ms)
        .fetch_optional(&mut conn)
        .await?;
        if admitted.is_some() {
            conn.commit().await?;
            return Ok(None);
        }
        let tat: i64 = sql::<D>("SELECT tat FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        conn.commit().await?;
        Ok(Some(
            (tat.max(now.millis()) + interval_ms - period_ms - now.millis()).max(1),
        ))
    }

    async fn forget_limit(&self, key: &str) -> Result<()> {
        sql::<D>("DELETE FROM rate_limits WHERE key = $1")
            .bind(key)
            .written(self)
            .await?;
        Ok(())
    }
}

/// The index of the limit that refused an item, and the milliseconds to wait.
pub(super) type Refused = (usize, i64);

/// `rate_limit` for many events at once, on counters read (and locked) as
/// `tats`: each item's limits admit it all together or not at all (a refused
/// item counts against none of them), in order. Per item, `None` if admitted,
/// else the first limit that refused it and the milliseconds to wait; and the
/// counters that moved, with their new times.
pub(super) fn decide_limits(
    mut tats: HashMap<String, i64>,
    now: Timestamp,
    items: &[&[Limit]],
) -> (Vec<Option<Refused>>, Vec<(String, i64)>) {
    let now = now.millis();
    let mut changed = BTreeSet::new();
    let mut decided = Vec::with_capacity(items.len());
    for limits in items {
        let next: Vec<std::result::Result<i64, i64>> = limits
            .iter()
            .map(|l| gcra(tats.get(&l.key).copied().unwrap_or(0), now, l))
            .collect();
        let refused = next
            .iter()
            .enumerate()
            .find_map(|(i, n)| n.err().map(|w| (i, w)));
        if refused.is_none() {
            for (l, tat) in limits.iter().zip(next) {
                tats.insert(l.key.clone(), tat.unwrap_or_default());
                changed.insert(l.key.as_str());
            }
        }
        decided.push(refused);
    }
    let changed = changed
        .into_iter()
        .map(|k| (k.to_string(), tats[k]))
        .collect();
    (decided, changed)
}

/// The counter's next theoretical arrival time if one more event fits, else
/// the milliseconds until it would: the arithmetic `rate_limit`'s statement does.
fn gcra(tat: i64, now: i64, l: &Limit) -> std::result::Result<i64, i64> {
    let next = tat.max(now) + l.interval_ms;
    if next - now <= l.period_ms {
        Ok(next)
    } else {
        Err((next - l.period_ms - now).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(key: &str, per_second: i64) -> Limit {
        Limit {
            key: key.into(),
            interval_ms: 1000 / per_second,
            period_ms: 1000,
        }
    }

    #[test]
    fn an_item_counts_against_all_its_limits_or_none() {
        let (tenant, a, b) = (limit("t", 3), limit("a", 1), limit("b", 5));
        let items: Vec<Vec<Limit>> = vec![
            vec![tenant.clone(), a.clone()],
            vec![tenant.clone(), a.clone()], // `a` is full: `t` is not counted
            vec![tenant.clone(), b.clone()],
            vec![tenant.clone(), b.clone()],
            vec![tenant.clone(), b.clone()], // `t` is full now
        ];
        let items: Vec<&[Limit]> = items.iter().map(Vec::as_slice).collect();
        let now = Timestamp(10_000);
        let (decided, changed) = decide_limits(HashMap::from([("b".into(), 0)]), now, &items);
        assert_eq!(decided[..4], [None, Some((1, 1000)), None, None]);
        assert_eq!(decided[4].map(|(i, _)| i), Some(0));
        assert_eq!(
            changed,
            [
                ("a".into(), 11_000),
                ("b".into(), 10_400),
                ("t".into(), 10_999)
            ]
        );
    }
}
