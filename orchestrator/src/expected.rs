//! The expected items of each order, as the till sends them at run time.
//!
//! Every order the API receives is stored in the results bucket at
//! `{results_prefix}expected/{order_id}.json` ([`oa_contract::expected_key`]), so every
//! replica and every restart sees it:
//!
//! ```json
//! {"order_id": "384", "items": [{"name": "green apple", "quantity": 2}], "updated_unix_ms": 1700000000000}
//! ```
//!
//! A lookup reads, in this order: the in-memory cache (at most [`CACHE_CAPACITY`]
//! orders, the oldest out; an entry is trusted for [`CACHE_TTL`], so a replacement or a
//! deletion made through another replica is seen within that time), the bucket (one GET
//! on a miss; absence is not cached, so an order another replica receives is seen at the
//! next lookup), then the `orders_file` (the base layer: the API wins over the file for
//! the same ID). The file is reloaded by [`ExpectedOrders::watch_orders_file`].
//!
//! Names are resolved through the inventory ([`Inventory::canonical`] without fuzzy
//! matching: an exact name or alias) and stored as inventory names; an unknown name is
//! refused, naming it. Quantities are 1..=[`MAX_QUANTITY`]; one item named twice is
//! added up.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::orders::{Inventory, Orders};
use crate::result::Item;
use crate::shutdown::Stopping;
use crate::store::{Store, StoreError};

/// Orders held in memory at most; the oldest cached goes first.
pub const CACHE_CAPACITY: usize = 10_000;
/// How long a cached order is used before it is read from the bucket again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Largest quantity of one item.
pub const MAX_QUANTITY: u64 = 99;
/// Most items in one order.
pub const MAX_ITEMS: usize = 200;
/// Most orders in one batch.
pub const MAX_BATCH: usize = 500;
/// How often the orders file's modification time is checked.
pub const ORDERS_FILE_CHECK: Duration = Duration::from_secs(5);
/// Inventory names listed in an "unknown item" error at most.
const KNOWN_IN_ERROR: usize = 20;

/// One order's expected items, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExpectedOrder {
    pub order_id: String,
    pub items: Vec<Item>,
    pub updated_unix_ms: i64,
}

/// Where an order's expected items come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Stored through the API (in the bucket).
    Api,
    /// The `orders_file`.
    OrdersFile,
}

/// Input that is refused: the message names the field (`items[2].name: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a PUT created the order or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Written {
    Created,
    Replaced,
}

/// Called with the order ID of every order stored through this process.
pub type ArrivalCallback = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Cache {
    map: HashMap<String, (u64, Instant, ExpectedOrder)>,
    /// Insertion order: `(generation, order_id)`; stale generations are skipped.
    order: VecDeque<(u64, String)>,
    next: u64,
}

impl Cache {
    fn get(&self, id: &str) -> Option<ExpectedOrder> {
        self.map
            .get(id)
            .filter(|(_, at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, _, o)| o.clone())
    }

    fn insert(&mut self, o: ExpectedOrder) {
        let generation = self.next;
        self.next += 1;
        self.order.push_back((generation, o.order_id.clone()));
        self.map
            .insert(o.order_id.clone(), (generation, Instant::now(), o));
        while self.map.len() > CACHE_CAPACITY {
            let Some((g, id)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&id).is_some_and(|(cur, _, _)| *cur == g) {
                self.map.remove(&id);
            }
        }
        // Replaced entries leave stale generations behind; keep the queue bounded too.
        if self.order.len() > 2 * CACHE_CAPACITY {
            let map = &self.map;
            self.order
                .retain(|(g, id)| map.get(id).is_some_and(|(cur, _, _)| cur == g));
        }
    }

    fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }
}

/// The expected-orders service, shared by the consumer and the HTTP API.
pub struct ExpectedOrders {
    store: Store,
    bucket: String,
    prefix: String,
    inventory: Arc<Inventory>,
    base: RwLock<Arc<Orders>>,
    cache: Mutex<Cache>,
    arrivals: Mutex<Vec<ArrivalCallback>>,
}

fn now_ms() -> i64 {
    crate::consume::now_ms()
}

impl ExpectedOrders {
    /// Orders stored in `bucket` under `{results_prefix}expected/`, over `base` (the
    /// orders file).
    pub fn new(
        store: Store,
        bucket: impl Into<String>,
        results_prefix: impl Into<String>,
        inventory: Arc<Inventory>,
        base: Orders,
    ) -> Arc<ExpectedOrders> {
        Arc::new(ExpectedOrders {
            store,
            bucket: bucket.into(),
            prefix: results_prefix.into(),
            inventory,
            base: RwLock::new(Arc::new(base)),
            cache: Mutex::new(Cache::default()),
            arrivals: Mutex::new(Vec::new()),
        })
    }

    /// Calls `f` with the order ID of every order stored (created or replaced) through
    /// this process.
    pub fn on_arrival(&self, f: ArrivalCallback) {
        self.arrivals.lock().unwrap().push(f);
    }

    /// Replaces the base layer (the orders file).
    pub fn set_base(&self, orders: Orders) {
        *self.base.write().unwrap() = Arc::new(orders);
    }

    /// The base layer now.
    pub fn base(&self) -> Arc<Orders> {
        self.base.read().unwrap().clone()
    }

    fn key(&self, order_id: &str) -> Result<String, Invalid> {
        oa_contract::expected_key(&self.prefix, order_id)
            .map_err(|e| Invalid(format!("order_id: {e}")))
    }

    /// The order as stored through the API (cache, then bucket).
    pub async fn stored(&self, order_id: &str) -> Result<Option<ExpectedOrder>, StoreError> {
        if let Some(o) = self.cache.lock().unwrap().get(order_id) {
            return Ok(Some(o));
        }
        let Ok(key) = self.key(order_id) else {
            return Ok(None);
        };
        let Some(obj) = self.store.get(&self.bucket, &key).await? else {
            self.cache.lock().unwrap().remove(order_id);
            return Ok(None);
        };
        match serde_json::from_slice::<ExpectedOrder>(&obj.body) {
            Ok(o) if o.order_id == order_id => {
                self.cache.lock().unwrap().insert(o.clone());
                Ok(Some(o))
            }
            Ok(o) => {
                tracing::warn!(
                    order = order_id,
                    "{key} names order {:?}; ignored",
                    o.order_id
                );
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(order = order_id, "{key} is unreadable ({e}); ignored");
                Ok(None)
            }
        }
    }

    /// The expected items of `order_id` and where they come from: the API's, else the
    /// orders file's; `None` when neither knows the order.
    pub async fn lookup(&self, order_id: &str) -> Result<Option<(Source, Vec<Item>)>, StoreError> {
        self.lookup_since(order_id, None).await
    }

    /// [`Self::lookup`], taking the API's items only when they were stored at or after
    /// `not_before_ms` (the orders file's always count: they have no time).
    pub async fn lookup_since(
        &self,
        order_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<Option<(Source, Vec<Item>)>, StoreError> {
        if let Some(o) = self.stored(order_id).await?
            && not_before_ms.is_none_or(|t| o.updated_unix_ms >= t)
        {
            return Ok(Some((Source::Api, o.items)));
        }
        Ok(self
            .base()
            .get(order_id)
            .map(|items| (Source::OrdersFile, items.to_vec())))
    }

    /// Checks `body` (`{"items": [...]}`) for `order_id` and returns the order to store.
    pub fn parse_put(&self, order_id: &str, body: &[u8]) -> Result<ExpectedOrder, Invalid> {
        self.key(order_id)?;
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Invalid(format!("body: invalid JSON: {e}")))?;
        let Value::Object(obj) = &v else {
            return Err(Invalid(
                "body: must be a JSON object {\"items\": [...]}".into(),
            ));
        };
        if let Some(id) = obj.get("order_id")
            && id.as_str() != Some(order_id)
        {
            return Err(Invalid(format!(
                "order_id: {id} differs from the order ID in the path ({order_id:?})"
            )));
        }
        self.order(order_id, obj.get("items"), "")
    }

    /// Checks a batch (`{"orders": [{"order_id", "items"}, ...]}`): every order or none.
    pub fn parse_batch(&self, body: &[u8]) -> Result<Vec<ExpectedOrder>, Invalid> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Invalid(format!("body: invalid JSON: {e}")))?;
        let Some(orders) = v.get("orders") else {
            return Err(Invalid("orders: missing".into()));
        };
        let Value::Array(orders) = orders else {
            return Err(Invalid("orders: must be an array".into()));
        };
        if orders.is_empty() {
            return Err(Invalid("orders: empty".into()));
        }
        if orders.len() > MAX_BATCH {
            return Err(Invalid(format!(
                "orders: {} orders, at most {MAX_BATCH} in one batch",
                orders.len()
            )));
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(orders.len());
        for (i, o) in orders.iter().enumerate() {
            let at = format!("orders[{i}].");
            let id = match o.get("order_id") {
                None => return Err(Invalid(format!("{at}order_id: missing"))),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(Invalid(format!("{at}order_id: {other} is not a string")));
                }
            };
            self.key(&id).map_err(|e| Invalid(format!("{at}{e}")))?;
            if let Some(first) = seen.insert(id.clone(), i) {
                return Err(Invalid(format!(
                    "{at}order_id: {id:?} is also orders[{first}]"
                )));
            }
            out.push(self.order(&id, o.get("items"), &at)?);
        }
        Ok(out)
    }

    /// Checks the `items` of one order; `at` prefixes the field names.
    fn order(
        &self,
        order_id: &str,
        items: Option<&Value>,
        at: &str,
    ) -> Result<ExpectedOrder, Invalid> {
        let bad = |field: String, why: String| Invalid(format!("{at}{field}: {why}"));
        let Some(items) = items else {
            return Err(bad("items".into(), "missing".into()));
        };
        let Value::Array(items) = items else {
            return Err(bad("items".into(), "must be an array".into()));
        };
        if items.is_empty() {
            return Err(bad(
                "items".into(),
                "empty: an order holds at least one item".into(),
            ));
        }
        if items.len() > MAX_ITEMS {
            return Err(bad(
                "items".into(),
                format!("{} items, at most {MAX_ITEMS}", items.len()),
            ));
        }
        let mut out: Vec<Item> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let Value::Object(it) = it else {
                return Err(bad(
                    format!("items[{i}]"),
                    "must be an object {\"name\", \"quantity\"}".into(),
                ));
            };
            let name = match it.get("name") {
                None => return Err(bad(format!("items[{i}].name"), "missing".into())),
                Some(Value::String(s)) => s,
                Some(other) => {
                    return Err(bad(
                        format!("items[{i}].name"),
                        format!("{other} is not a string"),
                    ));
                }
            };
            let quantity = match it.get("quantity") {
                None => 1,
                Some(q) => match q.as_u64() {
                    Some(n) if (1..=MAX_QUANTITY).contains(&n) => n as u32,
                    _ => {
                        return Err(bad(
                            format!("items[{i}].quantity"),
                            format!("{q} is not a whole number in 1..={MAX_QUANTITY}"),
                        ));
                    }
                },
            };
            let Some(canonical) = self.inventory.canonical(name, 0) else {
                return Err(bad(
                    format!("items[{i}].name"),
                    format!("unknown item {name:?}; known: {}", self.known()),
                ));
            };
            match out.iter_mut().find(|o| o.name == canonical) {
                Some(o) => {
                    o.quantity += quantity;
                    if u64::from(o.quantity) > MAX_QUANTITY {
                        return Err(bad(
                            format!("items[{i}].quantity"),
                            format!(
                                "{canonical:?} adds up to {}, at most {MAX_QUANTITY}",
                                o.quantity
                            ),
                        ));
                    }
                }
                None => out.push(Item {
                    name: canonical.to_owned(),
                    quantity,
                }),
            }
        }
        Ok(ExpectedOrder {
            order_id: order_id.to_owned(),
            items: out,
            updated_unix_ms: now_ms(),
        })
    }

    /// The inventory's names, for an error message.
    fn known(&self) -> String {
        let names: Vec<&str> = self
            .inventory
            .items
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        let mut s = names
            .iter()
            .take(KNOWN_IN_ERROR)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > KNOWN_IN_ERROR {
            s.push_str(&format!(", ... ({} more)", names.len() - KNOWN_IN_ERROR));
        }
        if s.is_empty() {
            s.push_str("(the inventory is empty)");
        }
        s
    }

    /// Stores `order` (checked by [`Self::parse_put`] or [`Self::parse_batch`]) and wakes
    /// whoever waits for it.
    pub async fn put(
        &self,
        mut order: ExpectedOrder,
    ) -> Result<(Written, ExpectedOrder), StoreError> {
        let key = self
            .key(&order.order_id)
            .map_err(|e| StoreError(e.to_string()))?;
        order.updated_unix_ms = now_ms();
        let body = serde_json::to_vec_pretty(&order).expect("an expected order serialises");
        let written = if self
            .store
            .put_if_absent(&self.bucket, &key, body.clone())
            .await?
        {
            Written::Created
        } else {
            self.store
                .put(&self.bucket, &key, body, "application/json")
                .await?;
            Written::Replaced
        };
        let id = order.order_id.clone();
        self.cache.lock().unwrap().insert(order.clone());
        for f in self.arrivals.lock().unwrap().iter() {
            f(&id);
        }
        Ok((written, order))
    }

    /// Removes what the API stored for `order_id`; `false` when it stored nothing (the
    /// orders file, if it names the order, applies again).
    pub async fn delete(&self, order_id: &str) -> Result<bool, StoreError> {
        let key = self.key(order_id).map_err(|e| StoreError(e.to_string()))?;
        self.cache.lock().unwrap().remove(order_id);
        if !self.store.exists(&self.bucket, &key).await? {
            return Ok(false);
        }
        self.store.delete(&self.bucket, &key).await?;
        self.cache.lock().unwrap().remove(order_id);
        Ok(true)
    }

    /// The newest `limit` orders stored through the API, newest first (by the listing's
    /// LastModified).
    pub async fn list(self: &Arc<Self>, limit: usize) -> Result<Vec<ExpectedOrder>, StoreError> {
        let prefix = oa_contract::expected_prefix(&self.prefix);
        let mut listed: Vec<(i64, String)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = self
                .store
                .list_page(&self.bucket, &prefix, after.as_deref(), 1000)
                .await?;
            after = page.last().map(|l| l.key.clone());
            for l in page {
                if let Some(id) = oa_contract::parse_expected_key(&self.prefix, &l.key) {
                    listed.push((l.last_modified_ms.unwrap_or(0), id.to_owned()));
                }
            }
            if !more || after.is_none() {
                break;
            }
        }
        listed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        listed.truncate(limit);
        // A few at a time: the cache answers most, the rest are small GETs.
        let mut out = Vec::with_capacity(listed.len());
        let mut set = tokio::task::JoinSet::new();
        let mut ids = listed.into_iter().map(|(_, id)| id);
        loop {
            while set.len() < 16
                && let Some(id) = ids.next()
            {
                let this = self.clone();
                set.spawn(async move { this.stored(&id).await });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let got = done.map_err(|e| StoreError(format!("expected-order task: {e}")))?;
            if let Some(o) = got? {
                out.push(o);
            }
        }
        // Same-second writes list in key order; the body's own time breaks the tie.
        out.sort_by(|a, b| {
            b.updated_unix_ms
                .cmp(&a.updated_unix_ms)
                .then_with(|| b.order_id.cmp(&a.order_id))
        });
        Ok(out)
    }

    /// Reloads the orders file whenever its modification time (or size) changes, checked
    /// every `every`, and whenever `reload` fires (SIGHUP), until `stopping`. A file that
    /// does not load is logged at error level and the previous orders are kept.
    pub async fn watch_orders_file(
        self: Arc<Self>,
        path: PathBuf,
        every: Duration,
        mut reload: tokio::sync::mpsc::UnboundedReceiver<()>,
        mut stopping: Stopping,
    ) {
        let mut seen = file_version(&path);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = reload.recv() => true,
                _ = stopping.wait() => return,
            };
            let now = file_version(&path);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            self.reload_orders_file(&path);
        }
    }

    /// Loads the orders file into the base layer; on error logs it and keeps the previous
    /// orders. `true` when it loaded.
    pub fn reload_orders_file(&self, path: &Path) -> bool {
        match Orders::load(path) {
            Ok(o) => {
                tracing::info!(
                    orders = o.len(),
                    file = %path.display(),
                    "orders_file reloaded"
                );
                self.set_base(o);
                true
            }
            Err(e) => {
                tracing::error!(
                    file = %path.display(),
                    "orders_file not reloaded, the previous {} order(s) are kept: {e}",
                    self.base().len()
                );
                false
            }
        }
    }
}

/// What tells one version of a file from the next.
fn file_version(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Arc<ExpectedOrders> {
        let inventory = Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},{"id":"2","name":"banana"}]}"#,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(Store::connect(
            Some("http://127.0.0.1:9"),
            "us-east-1",
            true,
        ));
        ExpectedOrders::new(store, "b", "", Arc::new(inventory), Orders::default())
    }

    #[test]
    fn items_are_checked_and_named_by_the_inventory() {
        let s = service();
        let o = s
            .parse_put(
                "384",
                br#"{"items":[{"name":"Apple","quantity":2},{"name":"banana"},{"name":"green apple"}]}"#,
            )
            .unwrap();
        assert_eq!(
            o.items,
            [
                Item {
                    name: "green apple".into(),
                    quantity: 3
                },
                Item {
                    name: "banana".into(),
                    quantity: 1
                }
            ]
        );
        let err = |id: &str, body: &str| s.parse_put(id, body.as_bytes()).unwrap_err().0;
        assert_eq!(
            err(
                "1",
                r#"{"items":[{"name":"apple"},{"name":"banana"},{"name":"bananna"}]}"#
            ),
            r#"items[2].name: unknown item "bananna"; known: green apple, banana"#
        );
        assert!(
            err("1", r#"{"items":[{"name":"apple","quantity":0}]}"#)
                .starts_with("items[0].quantity:")
        );
        assert!(
            err("1", r#"{"items":[{"name":"apple","quantity":100}]}"#)
                .starts_with("items[0].quantity:")
        );
        assert!(
            err("1", r#"{"items":[{"name":"apple","quantity":1.5}]}"#)
                .starts_with("items[0].quantity:")
        );
        assert_eq!(err("1", r#"{}"#), "items: missing");
        assert!(err("1", r#"{"items":[]}"#).starts_with("items: empty"));
        assert!(err("1", r#"{"items":"#).starts_with("body: invalid JSON"));
        assert!(err("a.b", r#"{"items":[{"name":"apple"}]}"#).starts_with("order_id:"));
        assert!(
            err("1", r#"{"order_id":"2","items":[{"name":"apple"}]}"#).starts_with("order_id:")
        );
    }

    #[test]
    fn a_batch_is_checked_whole() {
        let s = service();
        let ok = s
            .parse_batch(br#"{"orders":[{"order_id":"1","items":[{"name":"apple"}]},{"order_id":"2","items":[{"name":"banana","quantity":3}]}]}"#)
            .unwrap();
        assert_eq!(ok.len(), 2);
        let err = |b: &str| s.parse_batch(b.as_bytes()).unwrap_err().0;
        assert!(
            err(r#"{"orders":[{"order_id":"1","items":[{"name":"apple"}]},{"order_id":"2","items":[{"name":"kiwi"}]}]}"#)
                .starts_with(r#"orders[1].items[0].name: unknown item "kiwi""#)
        );
        assert!(err(r#"{"orders":[{"order_id":"1","items":[{"name":"apple"}]},{"order_id":"1","items":[{"name":"apple"}]}]}"#)
            .starts_with("orders[1].order_id:"));
        assert!(
            err(r#"{"orders":[{"order_id":"../x","items":[{"name":"apple"}]}]}"#)
                .starts_with("orders[0].order_id:")
        );
        assert_eq!(err(r#"{}"#), "orders: missing");
        let many: Vec<String> = (0..=MAX_BATCH)
            .map(|i| format!(r#"{{"order_id":"{i}","items":[{{"name":"apple"}}]}}"#))
            .collect();
        assert!(
            err(&format!(r#"{{"orders":[{}]}}"#, many.join(","))).starts_with("orders: 501 orders")
        );
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let mut c = Cache::default();
        let order = |i: usize| ExpectedOrder {
            order_id: i.to_string(),
            items: vec![],
            updated_unix_ms: 0,
        };
        for i in 0..CACHE_CAPACITY + 10 {
            c.insert(order(i));
            // Replacing keeps the queue bounded as well.
            c.insert(order(i));
        }
        assert_eq!(c.map.len(), CACHE_CAPACITY);
        assert!(c.get("0").is_none() && c.get("9").is_none());
        assert!(c.get("10").is_some());
        assert!(c.order.len() <= 2 * CACHE_CAPACITY + 1);
    }
}
