//! Stream-stream joins in the DSL: `join`, `left_join`, `outer_join` of two [`KStream`]s within
//! [`JoinWindows`]. The operator lives in [`crate::join`]; this module wires it.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kstream::KStream;
use crate::join::{Buffered, JoinCore, JoinWindows, Joiner};
use crate::serde::{Json, Serde};
use crate::state::StoreHandle;
use crate::topology::{Data, Instantiation, Node, lock};

impl<K, V> KStream<K, V>
where
    K: Data + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
{
    /// Inner join with `other` within `windows`: one result per pair of records of a key whose
    /// timestamps are close enough. `name` names the two buffer stores
    /// (`{name}-left`, `{name}-right`) and, after a key change, the repartition topics.
    pub fn join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&K, V, VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        name: &str,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        self.window_join(other, windows, name, (false, false), move |k, v, o| {
            // Inner joins only ever see both sides.
            match (v, o) {
                (Some(v), Some(o)) => joiner(k, v, o),
                _ => unreachable!("inner join without a partner"),
            }
        })
    }

    /// Left join: as [`KStream::join`], plus each left record that met no partner, with
    /// `None`, once its window has closed.
    pub fn left_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&K, V, Option<VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        name: &str,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        self.window_join(
            other,
            windows,
            name,
            (true, false),
            move |k, v, o| match v {
                Some(v) => joiner(k, v, o),
                None => unreachable!("left join without a left record"),
            },
        )
    }

    /// Outer join: as [`KStream::left_join`], plus each right record that met no partner.
    pub fn outer_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        name: &str,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        self.window_join(other, windows, name, (true, true), joiner)
    }

    fn window_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        windows: JoinWindows,
        name: &str,
        (outer_left, outer_right): (bool, bool),
        joiner: impl Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        let builder = self.builder.clone();
        let (left_store, right_store) = (format!("{name}-left"), format!("{name}-right"));
        builder.add_store(&left_store);
        builder.add_store(&right_store);
        builder.use_event_time();
        // Equal keys must meet in one task: re-keyed sides go through a repartition topic.
        let left = if self.key_changed {
            self.repartition(&format!("{name}-left"))
        } else {
            self.clone()
        };
        let right = if other.key_changed {
            other.repartition(&format!("{name}-right"))
        } else {
            other.clone()
        };
        let out = Node::<K, VR>::new(builder.next_id());
        let core_id = builder.next_id();
        let joiner: Arc<Joiner<K, V, VO, VR>> = Arc::new(joiner);
        let make_core = {
            let (out, joiner) = (out.clone(), joiner.clone());
            move |inst: &mut Instantiation| -> Arc<Mutex<JoinCore<K, V, VO, VR>>> {
                crate::topology::instantiate_timer(inst, |inst| {
                    let key_serde: Arc<dyn Serde<K>> = Arc::new(Json::<K>::new());
                    let left = StoreHandle::register(
                        inst,
                        &left_store,
                        key_serde.clone(),
                        Arc::new(Json::<Buffered<V>>::new()),
                    );
                    let right = StoreHandle::register(
                        inst,
                        &right_store,
                        key_serde,
                        Arc::new(Json::<Buffered<VO>>::new()),
                    );
                    let outer = (outer_left, outer_right);
                    let downstream = out.instantiate(inst);
                    JoinCore::new(windows, (left, right), joiner.clone(), outer, downstream)
                })
            }
        };
        let make_left = make_core.clone();
        left.node.add_child(move |inst| {
            let core = inst.shared(core_id, |inst| make_left.clone()(inst));
            Box::new(move |ctx, r| lock(&core).on_left(ctx, r))
        });
        right.node.add_child(move |inst| {
            let core = inst.shared(core_id, |inst| make_core.clone()(inst));
            Box::new(move |ctx, r| lock(&core).on_right(ctx, r))
        });
        KStream::new(out, builder)
    }
}
