//! One page of `GET /api/orders`: newest first (by when the order's marker was written),
//! then by station and order key, so that the order of results never changes between two
//! requests. A cursor names the last result of a page; the next page starts after it, so a
//! result stored meanwhile (newer, hence before the cursor) never shifts a page.
//!
//! Pure: the consumer runs [`page`] over its results under its lock, the handler reads the
//! query and writes the JSON and the `Link` header.

use std::cmp::Reverse;
use std::fmt;

use crate::result::{OrderResult, OrderStatus};

/// The most results one page holds; also the page size after a cursor when none is asked
/// for.
pub const MAX_LIMIT: usize = 500;

/// Where a result sorts: newest marker first, results without a marker time last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    newest: Reverse<i64>,
    station: String,
    order: String,
}

impl Position {
    pub fn of(r: &OrderResult) -> Position {
        Position {
            newest: Reverse(r.marker_last_modified_ms.unwrap_or(i64::MIN)),
            station: r.station_id.clone(),
            order: r.order_id.clone(),
        }
    }

    /// Reads a cursor as [`Position`]'s `Display` writes it.
    pub fn parse(cursor: &str) -> Result<Position, String> {
        let bad = || format!("cursor {cursor:?} is not one this API returned");
        let mut parts = cursor.splitn(3, '~');
        let (Some(ms), Some(station), Some(order)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let ms = match ms {
            "-" => i64::MIN,
            ms => ms.parse().map_err(|_| bad())?,
        };
        oa_contract::validate_id(oa_contract::IdKind::Station, station).map_err(|_| bad())?;
        oa_contract::validate_order_key(order).map_err(|_| bad())?;
        Ok(Position {
            newest: Reverse(ms),
            station: station.to_owned(),
            order: order.to_owned(),
        })
    }
}

/// `{marker_ms}~{station}~{order}` (`-` for no time): only URL-safe characters, as IDs
/// hold no `~`.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.newest.0 {
            i64::MIN => write!(f, "-~{}~{}", self.station, self.order),
            ms => write!(f, "{ms}~{}~{}", self.station, self.order),
        }
    }
}

/// What a page shows.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub station: Option<String>,
    pub status: Option<OrderStatus>,
    /// Results after this one only (the cursor of the previous page).
    pub after: Option<Position>,
    /// 1..=[`MAX_LIMIT`]; `None`: every result (what the API returned before it paged).
    pub limit: Option<usize>,
}

/// One page and where the next one starts (`None`: this is the last).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub results: Vec<OrderResult>,
    pub next: Option<Position>,
}

/// The page `q` asks for among `all`, in any order; clones only the results it returns.
pub fn page<'a>(all: impl IntoIterator<Item = &'a OrderResult>, q: &Query) -> Page {
    let limit = q.limit.map_or(usize::MAX, |l| l.clamp(1, MAX_LIMIT));
    let mut matching: Vec<(Position, &OrderResult)> = all
        .into_iter()
        .filter(|r| q.station.as_deref().is_none_or(|s| r.station_id == s))
        .filter(|r| q.status.is_none_or(|s| r.validation.status == s))
        .map(|r| (Position::of(r), r))
        .filter(|(p, _)| q.after.as_ref().is_none_or(|after| p > after))
        .collect();
    let more = matching.len() > limit;
    if more {
        matching.select_nth_unstable_by(limit, |a, b| a.0.cmp(&b.0));
        matching.truncate(limit);
    }
    matching.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Page {
        next: more
            .then(|| matching.last().map(|(p, _)| p.clone()))
            .flatten(),
        results: matching.into_iter().map(|(_, r)| r.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(station: &str, order: &str, status: OrderStatus, at: Option<i64>) -> OrderResult {
        OrderResult::example(station, order, status, at)
    }

    fn keys(p: &Page) -> Vec<String> {
        p.results
            .iter()
            .map(|r| format!("{}/{}", r.station_id, r.order_id))
            .collect()
    }

    fn sample() -> Vec<OrderResult> {
        use OrderStatus::*;
        vec![
            result("s1", "1", Validated, Some(1_000)),
            result("s1", "2", Mismatch, Some(3_000)),
            result("s2", "7", Validated, Some(3_000)),
            result("s2", "8", Mismatch, None),
            result("s1", "2.2", Validated, Some(5_000)),
            result("s2", "9", Mismatch, Some(2_000)),
        ]
    }

    #[test]
    fn pages_newest_first_and_cursors_continue_without_gaps_or_repeats() {
        let all = sample();
        let mut q = Query {
            limit: Some(2),
            ..Query::default()
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(&all, &q);
            pages += 1;
            assert!(p.results.len() <= 2);
            seen.extend(keys(&p));
            match p.next {
                Some(next) => {
                    // What a client sends back is what it got.
                    q.after = Some(Position::parse(&next.to_string()).unwrap());
                }
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(
            seen,
            ["s1/2.2", "s1/2", "s2/7", "s2/9", "s1/1", "s2/8"],
            "newest first, ties by station and order, no time last"
        );
    }

    #[test]
    fn filters_apply_before_the_limit() {
        let all = sample();
        let q = Query {
            station: Some("s2".into()),
            status: Some(OrderStatus::Mismatch),
            limit: Some(1),
            after: None,
        };
        let first = page(&all, &q);
        assert_eq!(keys(&first), ["s2/9"]);
        let rest = page(
            &all,
            &Query {
                after: first.next,
                ..q
            },
        );
        assert_eq!(keys(&rest), ["s2/8"]);
        assert!(rest.next.is_none());
        let exact = page(
            &all,
            &Query {
                limit: Some(6),
                ..Query::default()
            },
        );
        assert_eq!(exact.results.len(), 6);
        assert!(exact.next.is_none(), "a full last page has no next");
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        for r in sample() {
            let p = Position::of(&r);
            assert_eq!(Position::parse(&p.to_string()).unwrap(), p);
        }
        assert_eq!(
            Position::of(&sample()[4]).to_string(),
            "5000~s1~2.2",
            "URL-safe as it is"
        );
        for bad in ["", "x~s1~1", "1~s1", "1~../x~1", "1~s1~a/b", "1~s1~1.1"] {
            let e = Position::parse(bad).unwrap_err();
            assert!(e.contains("not one this API returned"), "{bad}: {e}");
        }
    }
}
