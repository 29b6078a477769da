//! `station.state` events: the supervisor's station states, looked at every `every`, one
//! event per change (and one per station at start, with `previous: null`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Stopping;
use crate::status::{State, StationStatus};

use super::Events;

/// The changes between two looks: (station, previous state, status now).
pub fn changes<'a>(
    seen: &mut HashMap<String, State>,
    now: &'a [StationStatus],
) -> Vec<(Option<State>, &'a StationStatus)> {
    let mut out = Vec::new();
    for s in now {
        let before = seen.insert(s.station_id.clone(), s.state);
        if before != Some(s.state) {
            out.push((before, s));
        }
    }
    out
}

pub async fn watch(
    events: Arc<Events>,
    statuses: impl Fn() -> Vec<StationStatus> + Send + 'static,
    every: Duration,
    mut stopping: Stopping,
) {
    let mut seen = HashMap::new();
    loop {
        let now = statuses();
        for (previous, s) in changes(&mut seen, &now) {
            let data = serde_json::json!({
                "state": s.state,
                "previous": previous,
                "pid": s.pid,
                "restarts": s.restarts,
                "last_exit": s.last_exit,
            });
            events.emit(events.station_event(&s.station_id, data)).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_first_sight_and_changes_only() {
        let mut seen = HashMap::new();
        let mut a = StationStatus::new("a");
        let first = vec![a.clone()];
        let c = changes(&mut seen, &first);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, None);
        assert!(changes(&mut seen, &first).is_empty());
        a.state = State::Running;
        let running = vec![a];
        let c = changes(&mut seen, &running);
        assert_eq!(
            (c[0].0, c[0].1.state),
            (Some(State::Starting), State::Running)
        );
    }
}
