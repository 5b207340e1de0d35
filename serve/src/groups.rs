//! The group coordinator of Kafka's classic rebalance protocol: members join (a two-step join:
//! a new member first gets its id), the first to join leads and assigns, everyone syncs to get
//! an assignment, heartbeats keep a member in and tell it when to rejoin. Generations fence
//! members of an older round. Membership lives in memory; committed offsets go to the log.
//!
//! States, as Kafka's: `Empty` -> (join) `PreparingRebalance` -> (every member rejoined, or the
//! rebalance timeout passed) `CompletingRebalance` -> (the leader's sync) `Stable` -> (a join,
//! a leave or an expired session) `PreparingRebalance`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often deadlines (rebalance and session timeouts) are checked.
pub(crate) const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A group as DescribeGroups shows it.
pub(crate) struct GroupView {
    pub(crate) state: State,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberView>,
}

/// A member as DescribeGroups shows it.
pub(crate) struct MemberView {
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    pub(crate) assignment: Bytes,
}

/// A join request, as the coordinator needs it.
pub(crate) struct Join {
    pub(crate) group: String,
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    /// Static membership (KIP-345): the same instance keeps its place across restarts.
    pub(crate) instance_id: Option<String>,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    /// v4+: a new member first gets its id back and joins again with it.
    pub(crate) require_known_member_id: bool,
}

/// What a join answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Joined {
    pub(crate) error: i16,
    pub(crate) generation: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// For the leader: every member and its metadata for the chosen protocol.
    pub(crate) members: Vec<(String, Bytes)>,
}

struct Member {
    client_id: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    assignment: Bytes,
    last_seen: Instant,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Ids handed out with `MEMBER_ID_REQUIRED`, not members until they join with them.
    pending: std::collections::HashSet<String>,
    /// Static members: instance id -> its current member id.
    instances: HashMap<String, String>,
    joining: HashMap<String, oneshot::Sender<Joined>>,
    syncing: HashMap<String, oneshot::Sender<(i16, Bytes)>>,
    /// When a rebalance completes even if members have not rejoined.
    rebalance_deadline: Instant,
    /// The first rebalance of an empty group waits until then for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`), so members started together share generation 1.
    initial_delay_until: Option<Instant>,
    /// How far new members may push `initial_delay_until` (the largest rebalance timeout).
    initial_delay_cap: Instant,
}

impl Group {
    fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending: std::collections::HashSet::new(),
            instances: HashMap::new(),
            joining: HashMap::new(),
            syncing: HashMap::new(),
            rebalance_deadline: Instant::now(),
            initial_delay_until: None,
            initial_delay_cap: Instant::now(),
        }
    }

    /// Starts (from an empty group) or extends (a new member came) the initial delay: each
    /// new member pushes it `delay` further, up to the rebalance timeout, as Kafka's
    /// `InitialDelayedJoin`.
    fn delay_first_rebalance(&mut self, from_empty: bool, new_member: bool, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let now = Instant::now();
        if from_empty {
            self.initial_delay_cap = self.rebalance_deadline.max(now + delay);
            self.initial_delay_until = Some(now + delay);
        } else if new_member && let Some(until) = &mut self.initial_delay_until {
            *until = (now + delay).min(self.initial_delay_cap).max(*until);
        }
        self.rebalance_deadline = self.rebalance_deadline.max(self.initial_delay_cap);
    }

    /// Starts a rebalance: members learn it from heartbeats and rejoin; waiting syncs fail.
    fn prepare_rebalance(&mut self) {
        if self.state == State::PreparingRebalance {
            return;
        }
        for (_, waiter) in self.syncing.drain() {
            let _ = waiter.send((ResponseError::RebalanceInProgress.code(), Bytes::new()));
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Instant::now() + timeout;
        self.state = State::PreparingRebalance;
    }

    /// Completes the join round once every member rejoined, or `force`d at the deadline (members
    /// that did not rejoin are dropped).
    fn try_complete_join(&mut self, force: bool) {
        if self.state != State::PreparingRebalance {
            return;
        }
        if self
            .initial_delay_until
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        self.initial_delay_until = None;
        let all_joined = self.members.keys().all(|m| self.joining.contains_key(m));
        if !all_joined && !force {
            return;
        }
        self.members.retain(|id, _| self.joining.contains_key(id));
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader.clear();
            self.protocol.clear();
            return;
        }
        // The first of the leader's protocols that every member supports.
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().cloned().unwrap_or_default();
        }
        let leader = &self.members[&self.leader];
        let chosen = leader.protocols.iter().map(|(name, _)| name).find(|name| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
        });
        let Some(chosen) = chosen.cloned() else {
            for (_, waiter) in self.joining.drain() {
                let _ = waiter.send(Joined {
                    error: ResponseError::InconsistentGroupProtocol.code(),
                    ..Joined::default()
                });
            }
            self.members.clear();
            self.state = State::Empty;
            return;
        };
        self.protocol = chosen;
        self.state = State::CompletingRebalance;
        let everyone: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == self.protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                (id.clone(), metadata)
            })
            .collect();
        let now = Instant::now();
        for (id, waiter) in self.joining.drain() {
            if let Some(member) = self.members.get_mut(&id) {
                member.last_seen = now;
            }
            let _ = waiter.send(Joined {
                error: 0,
                generation: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol: self.protocol.clone(),
                leader: self.leader.clone(),
                members: if id == self.leader {
                    everyone.clone()
                } else {
                    Vec::new()
                },
                member_id: id,
            });
        }
    }

    fn remove_member(&mut self, id: &str) {
        self.members.remove(id);
        self.instances.retain(|_, member| member != id);
        self.joining.remove(id);
        self.syncing.remove(id);
        if self.members.is_empty() && self.joining.is_empty() {
            self.state = State::Empty;
            self.leader.clear();
        } else {
            self.prepare_rebalance();
            self.try_complete_join(false);
        }
    }
}

/// Every group's membership.
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
    /// Kafka's `group.initial.rebalance.delay.ms`.
    initial_delay: Duration,
    /// Set when the server stops: joins and syncs are answered at once instead of waiting for
    /// a rebalance no tick will complete.
    closed: AtomicBool,
}

/// A generation check's verdict for a member's request.
fn check(
    group: Option<&Group>,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), i16> {
    let Some(group) = group else {
        return Err(ResponseError::UnknownMemberId.code());
    };
    // A static instance that restarted took a new member id: the old one is fenced.
    if let Some(instance) = instance_id
        && group
            .instances
            .get(instance)
            .is_some_and(|m| m != member_id)
    {
        return Err(ResponseError::FencedInstanceId.code());
    }
    if !group.members.contains_key(member_id) {
        return Err(ResponseError::UnknownMemberId.code());
    }
    if generation != group.generation {
        return Err(ResponseError::IllegalGeneration.code());
    }
    Ok(())
}

impl Coordinator {
    /// A coordinator whose empty groups wait `initial_delay` for more members before their
    /// first rebalance.
    pub(crate) fn new(initial_delay: Duration) -> Self {
        Self {
            groups: Mutex::default(),
            next_member: AtomicU64::new(0),
            initial_delay,
            closed: AtomicBool::new(false),
        }
    }

    /// Answers every waiting join and sync with `COORDINATOR_NOT_AVAILABLE` (clients look for
    /// the coordinator again) and refuses new ones, so a stopping server does not wait for
    /// rebalances.
    pub(crate) fn shut_down(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let code = ResponseError::CoordinatorNotAvailable.code();
        for group in self.lock().values_mut() {
            for (_, waiter) in group.joining.drain() {
                let _ = waiter.send(Joined {
                    error: code,
                    ..Joined::default()
                });
            }
            for (_, waiter) in group.syncing.drain() {
                let _ = waiter.send((code, Bytes::new()));
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins (or rejoins) a member; resolves when the round completes.
    pub(crate) async fn join(&self, join: Join) -> Joined {
        let waiter = {
            let mut groups = self.lock();
            if self.is_closed() {
                return Joined {
                    error: ResponseError::CoordinatorNotAvailable.code(),
                    ..Joined::default()
                };
            }
            let group = groups.entry(join.group.clone()).or_insert_with(Group::new);
            if group.state != State::Empty
                && !group.members.is_empty()
                && group.protocol_type != join.protocol_type
            {
                return Joined {
                    error: ResponseError::InconsistentGroupProtocol.code(),
                    ..Joined::default()
                };
            }
            let current = join
                .instance_id
                .as_ref()
                .and_then(|instance| group.instances.get(instance).cloned());
            if let Some(current) = &current
                && !join.member_id.is_empty()
                && join.member_id != *current
            {
                return Joined {
                    error: ResponseError::FencedInstanceId.code(),
                    member_id: join.member_id.clone(),
                    ..Joined::default()
                };
            }
            let member_id = if let (Some(current), true) = (&current, join.member_id.is_empty()) {
                // A static member back after a restart: it takes its old place under a new id,
                // fencing the old one, and a stable group does not rebalance for it.
                let id = format!(
                    "{}-{}",
                    join.client_id,
                    self.next_member.fetch_add(1, Ordering::Relaxed)
                );
                let mut moved = group
                    .members
                    .remove(current)
                    .unwrap_or_else(|| member(&join));
                group.joining.remove(current);
                group.syncing.remove(current);
                if group.leader == *current {
                    group.leader = id.clone();
                }
                let unchanged = moved.protocols == join.protocols;
                moved.protocols = join.protocols.clone();
                moved.last_seen = Instant::now();
                group.members.insert(id.clone(), moved);
                if let Some(instance) = &join.instance_id {
                    group.instances.insert(instance.clone(), id.clone());
                }
                if group.state == State::Stable && unchanged {
                    return Joined {
                        error: 0,
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        leader: group.leader.clone(),
                        member_id: id,
                        members: Vec::new(),
                    };
                }
                id
            } else if join.member_id.is_empty() {
                let n = self.next_member.fetch_add(1, Ordering::Relaxed);
                let id = format!("{}-{n}", join.client_id);
                if let Some(instance) = &join.instance_id {
                    // Static members skip the two-step join.
                    group.instances.insert(instance.clone(), id.clone());
                } else if join.require_known_member_id {
                    // It joins again with this id (KIP-394).
                    group.pending.insert(id.clone());
                    return Joined {
                        error: ResponseError::MemberIdRequired.code(),
                        member_id: id,
                        ..Joined::default()
                    };
                }
                id
            } else if group.members.contains_key(&join.member_id)
                || group.pending.remove(&join.member_id)
            {
                join.member_id.clone()
            } else {
                return Joined {
                    error: ResponseError::UnknownMemberId.code(),
                    member_id: join.member_id.clone(),
                    ..Joined::default()
                };
            };
            let unchanged = group
                .members
                .get(&member_id)
                .is_some_and(|m| m.protocols == join.protocols);
            let restarted = current.is_some() && join.member_id.is_empty();
            // A follower rejoining a stable group with nothing new only learns where it is.
            if group.state == State::Stable && unchanged && member_id != group.leader && !restarted
            {
                if let Some(member) = group.members.get_mut(&member_id) {
                    member.last_seen = Instant::now();
                }
                return Joined {
                    error: 0,
                    generation: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol: group.protocol.clone(),
                    leader: group.leader.clone(),
                    member_id,
                    members: Vec::new(),
                };
            }
            let assignment = group
                .members
                .get(&member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default();
            let mut joined = member(&join);
            joined.assignment = assignment;
            let new_member = group.members.insert(member_id.clone(), joined).is_none();
            group.protocol_type = join.protocol_type.clone();
            let (tx, rx) = oneshot::channel();
            // A second join of the same member replaces the first, whose request is answered
            // with an error when its sender drops.
            group.joining.insert(member_id.clone(), tx);
            let from_empty = group.state == State::Empty;
            group.prepare_rebalance();
            group.delay_first_rebalance(from_empty, new_member, self.initial_delay);
            group.try_complete_join(false);
            rx
        };
        waiter.await.unwrap_or(Joined {
            error: ResponseError::RebalanceInProgress.code(),
            ..Joined::default()
        })
    }

    /// The leader hands out assignments; everyone gets theirs.
    pub(crate) async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> (i16, Bytes) {
        let waiter = {
            let mut groups = self.lock();
            if self.is_closed() {
                return (ResponseError::CoordinatorNotAvailable.code(), Bytes::new());
            }
            let group = groups.get_mut(group_id);
            if let Err(code) = check(group.as_deref(), member_id, instance_id, generation) {
                return (code, Bytes::new());
            }
            let Some(group) = group else {
                return (ResponseError::UnknownMemberId.code(), Bytes::new());
            };
            match group.state {
                State::PreparingRebalance | State::Empty => {
                    return (ResponseError::RebalanceInProgress.code(), Bytes::new());
                }
                State::Stable => {
                    let assignment = group.members[member_id].assignment.clone();
                    return (0, assignment);
                }
                State::CompletingRebalance => {}
            }
            if member_id == group.leader {
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, member) in &mut group.members {
                    member.assignment = given.remove(id).unwrap_or_default();
                }
                group.state = State::Stable;
                for (id, waiter) in group.syncing.drain() {
                    let assignment = group
                        .members
                        .get(&id)
                        .map(|m| m.assignment.clone())
                        .unwrap_or_default();
                    let _ = waiter.send((0, assignment));
                }
                return (0, group.members[member_id].assignment.clone());
            }
            let (tx, rx) = oneshot::channel();
            group.syncing.insert(member_id.to_string(), tx);
            rx
        };
        waiter
            .await
            .unwrap_or((ResponseError::RebalanceInProgress.code(), Bytes::new()))
    }

    /// Keeps a member in; tells it when a rebalance needs it to rejoin.
    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut groups = self.lock();
        let group = groups.get_mut(group_id);
        if let Err(code) = check(group.as_deref(), member_id, instance_id, generation) {
            return code;
        }
        let Some(group) = group else { return 0 };
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_seen = Instant::now();
        }
        match group.state {
            State::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Members leave (by member id, or by instance id for static members); the others
    /// rebalance.
    pub(crate) fn leave(&self, group_id: &str, leaving: &[(String, Option<String>)]) -> Vec<i16> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return vec![ResponseError::UnknownMemberId.code(); leaving.len()];
        };
        leaving
            .iter()
            .map(|(member_id, instance_id)| {
                let id = match instance_id.as_ref().and_then(|i| group.instances.get(i)) {
                    Some(current) if !member_id.is_empty() && member_id != current => {
                        return ResponseError::FencedInstanceId.code();
                    }
                    Some(current) => current.clone(),
                    None => member_id.clone(),
                };
                if group.members.contains_key(&id) {
                    group.remove_member(&id);
                    0
                } else {
                    ResponseError::UnknownMemberId.code()
                }
            })
            .collect()
    }

    /// Checks an offset commit's member and generation (-1: a commit from outside the group).
    pub(crate) fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        match self.check_txn_commit(group_id, member_id, instance_id, generation) {
            0 if generation >= 0
                && self
                    .lock()
                    .get(group_id)
                    .is_some_and(|g| g.state == State::PreparingRebalance) =>
            {
                ResponseError::RebalanceInProgress.code()
            }
            code => code,
        }
    }

    /// As [`Coordinator::check_commit`] for TxnOffsetCommit (KIP-447), which Kafka checks by
    /// member and generation only: a rebalance that has begun does not refuse it, since the
    /// generation the member commits under is still the group's until the rebalance ends.
    pub(crate) fn check_txn_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if generation < 0 {
            return 0;
        }
        let groups = self.lock();
        check(groups.get(group_id), member_id, instance_id, generation)
            .err()
            .unwrap_or(0)
    }

    /// What DescribeGroups shows of a group.
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        Some(GroupView {
            state: group.state,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Forgets a group without members (DeleteGroups); whether it was known. A group with
    /// members, or members joining, stays: `NON_EMPTY_GROUP`.
    pub(crate) fn remove_if_empty(&self, group_id: &str) -> Result<bool, i16> {
        let mut groups = self.lock();
        match groups.get(group_id) {
            None => Ok(false),
            Some(group) if !group.members.is_empty() || !group.joining.is_empty() => {
                Err(ResponseError::NonEmptyGroup.code())
            }
            Some(_) => {
                groups.remove(group_id);
                Ok(true)
            }
        }
    }

    /// Groups with members: (id, protocol type, state).
    pub(crate) fn list(&self) -> Vec<(String, String, State)> {
        self.lock()
            .iter()
            .map(|(id, g)| (id.clone(), g.protocol_type.clone(), g.state))
            .collect()
    }

    /// Drops members whose session expired and completes rebalances past their deadline.
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (id, group) in groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(member, m)| {
                    !group.joining.contains_key(*member) && now > m.last_seen + m.session_timeout
                })
                .map(|(member, _)| member.clone())
                .collect();
            for member in expired {
                tracing::info!(group = %id, member, "session expired; the group rebalances");
                group.remove_member(&member);
            }
            if group.state == State::PreparingRebalance {
                if group.initial_delay_until.is_some_and(|until| now >= until) {
                    group.try_complete_join(false);
                }
                if now >= group.rebalance_deadline {
                    group.try_complete_join(true);
                }
            }
        }
    }
}

fn member(join: &Join) -> Member {
    Member {
        client_id: join.client_id.clone(),
        protocols: join.protocols.clone(),
        session_timeout: join.session_timeout,
        rebalance_timeout: join.rebalance_timeout,
        assignment: Bytes::new(),
        last_seen: Instant::now(),
    }
}
