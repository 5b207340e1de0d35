//! Windowed aggregation in the DSL: [`KGroupedStream::windowed_by`] and friends, then `count`,
//! `reduce` or `aggregate` into a [`WindowedTable`], optionally suppressed to one final result
//! per window. The operators themselves live in [`crate::window`]; this module only wires them.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::grouped::KGroupedStream;
use super::kstream::KStream;
use super::ktable::KTable;
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::state::StoreHandle;
use crate::topology::{Data, Node, instantiate_timer};
use crate::window::{
    Aggregator, PendingSerde, SessionWindowAggregate, SessionWindows, SlidingWindowAggregate,
    SlidingWindows, Suppress, TimeWindowAggregate, TimeWindows, Windowed,
};

/// A grouped stream cut into time windows.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindows,
}

/// A grouped stream cut into sliding windows.
pub struct SlidingWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SlidingWindows,
}

/// A grouped stream cut into sessions.
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

/// The result of a windowed aggregation: a table of windows, with its grace period.
pub struct WindowedTable<K, A> {
    table: KTable<Windowed<K>, A>,
    /// How long after a window's `end` it closes (its result may change until then).
    grace_ms: i64,
    /// Whether the windows include their `end` (sessions and sliding windows).
    end_inclusive: bool,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<A>>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Cuts each key's records into tumbling or hopping windows.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: self.clone(),
            windows,
        }
    }

    /// Cuts each key's records into sliding windows.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> SlidingWindowedKStream<K, V> {
        SlidingWindowedKStream {
            grouped: self.clone(),
            windows,
        }
    }

    /// Cuts each key's records into sessions.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            grouped: self.clone(),
            windows,
        }
    }
}

/// `count`, `reduce` and `aggregate` of a windowed stream, all through its `aggregate_with`.
macro_rules! windowed_aggregations {
    ($stream:ident) => {
        impl<K: Data, V: Data> $stream<K, V> {
            /// Records per key and window.
            pub fn count(&self, store: &str) -> WindowedTable<K, u64> {
                self.aggregate_with(
                    store,
                    Arc::new(Json::<u64>::new()),
                    Arc::new(|_, _, n| n.unwrap_or(0) + 1),
                )
            }

            /// Combines each window's values with `f(aggregate, value)`.
            pub fn reduce(
                &self,
                store: &str,
                f: impl Fn(V, V) -> V + Send + Sync + 'static,
            ) -> WindowedTable<K, V> {
                let serde = self.grouped.grouped().value_serde.clone();
                self.aggregate_with(
                    store,
                    serde,
                    Arc::new(move |_, v, old| match old {
                        Some(a) => f(a, v),
                        None => v,
                    }),
                )
            }

            /// Folds each window's values into an `A` from `init()`; stored as JSON.
            pub fn aggregate<A: Data + Serialize + DeserializeOwned>(
                &self,
                store: &str,
                init: impl Fn() -> A + Send + Sync + 'static,
                f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
            ) -> WindowedTable<K, A> {
                self.aggregate_with(
                    store,
                    Arc::new(Json::<A>::new()),
                    Arc::new(move |k, v, old| f(k, v, old.unwrap_or_else(&init))),
                )
            }
        }
    };
}

windowed_aggregations!(TimeWindowedKStream);
windowed_aggregations!(SlidingWindowedKStream);

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        aggregator: Aggregator<K, V, A>,
    ) -> WindowedTable<K, A> {
        let input = self.grouped.partitioned_by_key(store);
        let builder = input.builder.clone();
        builder.add_store(store);
        builder.use_event_time();
        let table = Node::<Windowed<K>, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.grouped().key_serde.clone();
        let (windows, store_name, value_serde) = (self.windows, store.to_string(), serde.clone());
        input.node.add_child(move |inst| {
            let operator = instantiate_timer(inst, |inst| {
                let store = StoreHandle::register(
                    inst,
                    &store_name,
                    key_serde.clone(),
                    value_serde.clone(),
                );
                let downstream = graph.instantiate(inst);
                TimeWindowAggregate::new(windows, store, aggregator.clone(), downstream)
            });
            Box::new(move |ctx, r: Record<K, V>| crate::topology::lock(&operator).process(ctx, r))
        });
        WindowedTable {
            table: KTable::new(KStream::new(table, builder)),
            grace_ms: windows.grace_ms,
            end_inclusive: false,
            key_serde: self.grouped.grouped().key_serde.clone(),
            value_serde: serde,
        }
    }
}

impl<K: Data, V: Data> SlidingWindowedKStream<K, V> {
    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        aggregator: Aggregator<K, V, A>,
    ) -> WindowedTable<K, A> {
        let input = self.grouped.partitioned_by_key(store);
        let builder = input.builder.clone();
        builder.add_store(store);
        builder.use_event_time();
        let table = Node::<Windowed<K>, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.grouped().key_serde.clone();
        let value_serde = self.grouped.grouped().value_serde.clone();
        let (windows, store_name) = (self.windows, store.to_string());
        input.node.add_child(move |inst| {
            let operator = instantiate_timer(inst, |inst| {
                let store = StoreHandle::register(
                    inst,
                    &store_name,
                    key_serde.clone(),
                    Arc::new(Json::new()),
                );
                let downstream = graph.instantiate(inst);
                let values = value_serde.clone();
                SlidingWindowAggregate::new(windows, store, values, aggregator.clone(), downstream)
            });
            Box::new(move |ctx, r: Record<K, V>| crate::topology::lock(&operator).process(ctx, r))
        });
        WindowedTable {
            table: KTable::new(KStream::new(table, builder)),
            // Ends are inclusive: a window closes one millisecond after its end plus grace.
            grace_ms: windows.grace_ms + 1,
            end_inclusive: true,
            key_serde: self.grouped.grouped().key_serde.clone(),
            value_serde: serde,
        }
    }
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// Records per session.
    pub fn count(&self, store: &str) -> WindowedTable<K, u64> {
        self.aggregate_with(
            store,
            Arc::new(Json::<u64>::new()),
            Arc::new(|_, _, n: Option<u64>| n.unwrap_or(0) + 1),
            Arc::new(|a, b| a + b),
        )
    }

    /// Folds each session's values into an `A` from `init()`; `merge` combines two sessions
    /// that a record bridges.
    pub fn aggregate<A: Data + Serialize + DeserializeOwned>(
        &self,
        store: &str,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merge: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        self.aggregate_with(
            store,
            Arc::new(Json::<A>::new()),
            Arc::new(move |k, v, old: Option<A>| f(k, v, old.unwrap_or_else(&init))),
            Arc::new(merge),
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        aggregator: Aggregator<K, V, A>,
        merger: crate::window::Merger<A>,
    ) -> WindowedTable<K, A> {
        let input = self.grouped.partitioned_by_key(store);
        let builder = input.builder.clone();
        builder.add_store(store);
        builder.use_event_time();
        let table = Node::<Windowed<K>, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.grouped().key_serde.clone();
        let (windows, store_name, value_serde) = (self.windows, store.to_string(), serde.clone());
        input.node.add_child(move |inst| {
            let operator = instantiate_timer(inst, |inst| {
                // A key's sessions are kept together, as one JSON list.
                let store = StoreHandle::register(
                    inst,
                    &store_name,
                    key_serde.clone(),
                    Arc::new(Json::new()),
                );
                let downstream = graph.instantiate(inst);
                let functions = (aggregator.clone(), merger.clone());
                SessionWindowAggregate::new(
                    windows,
                    store,
                    value_serde.clone(),
                    functions,
                    downstream,
                )
            });
            Box::new(move |ctx, r: Record<K, V>| crate::topology::lock(&operator).process(ctx, r))
        });
        WindowedTable {
            table: KTable::new(KStream::new(table, builder)),
            // A session can grow until `gap` after its end; then the grace period runs.
            grace_ms: windows.gap_ms + windows.grace_ms,
            end_inclusive: true,
            key_serde: self.grouped.grouped().key_serde.clone(),
            value_serde: serde,
        }
    }
}

impl<K: Data, A: Data> WindowedTable<K, A> {
    /// Every update of every window (`None` retracts a merged session).
    pub fn to_stream(&self) -> KStream<Windowed<K>, Option<A>> {
        self.table.to_stream()
    }

    /// The windows as a table.
    pub fn table(&self) -> KTable<Windowed<K>, A> {
        self.table.clone()
    }

    /// One final result per window, emitted once event time passes the window's end plus the
    /// grace period, with a timestamp inside the window (its last millisecond). Pending windows
    /// live in the state store `store` (changelogged), so a restart neither loses nor repeats
    /// them.
    pub fn suppress_until_window_closes(&self, store: &str) -> KStream<Windowed<K>, A> {
        let updates = self.table.to_stream();
        let builder = updates.builder.clone();
        builder.add_store(store);
        builder.use_event_time();
        let out = Node::<Windowed<K>, A>::new(builder.next_id());
        let graph = out.clone();
        let timing = (self.grace_ms, self.end_inclusive);
        let (key_serde, value_serde, store_name) = (
            self.key_serde.clone(),
            self.value_serde.clone(),
            store.to_string(),
        );
        updates.node.add_child(move |inst| {
            let operator = instantiate_timer(inst, |inst| {
                let store = StoreHandle::register(
                    inst,
                    &store_name,
                    key_serde.clone(),
                    Arc::new(PendingSerde),
                );
                let downstream = graph.instantiate(inst);
                Suppress::new(timing, store, value_serde.clone(), downstream)
            });
            Box::new(move |ctx, r| crate::topology::lock(&operator).process(ctx, r))
        });
        KStream::new(out, builder)
    }
}
