//! The verdict on one run, from what the clients recorded alone: every
//! send they were answered 202 for, every message frame each user's
//! socket received (across reconnects), and each conversation's history
//! as query-api finally serves it.

use std::collections::{HashMap, HashSet};

/// One send, as its client saw it: retried with the same `client_id`
/// until answered 202 or given up.
#[derive(Clone, Debug)]
pub struct SendOp {
    pub from: usize,
    pub client_id: String,
    pub body: String,
    /// The message id of the 202, if one came.
    pub accepted: Option<String>,
    /// Answers before the last that were not a 202 (503s, timeouts).
    pub retries: usize,
}

/// A message as a reader saw it (socket frame or history entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub body: String,
}

/// Users 2k and 2k+1 talk to each other and to nobody else.
pub struct History {
    pub sends: Vec<SendOp>,
    /// Per user, message frames in the order its sockets received them.
    pub streams: Vec<Vec<Seen>>,
    /// Per conversation k (users 2k, 2k+1), as query-api pages it.
    pub histories: Vec<Vec<Seen>>,
    /// Anything a client saw that the contract forbids (a 500, a 4409, a
    /// `ready` that did not continue from `since`).
    pub violations: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub accepted: usize,
    /// 202s missing from a history or from a participant's sync.
    pub lost: usize,
    /// Messages seen more than once in one history or one user's sync.
    pub duplicated: usize,
    pub problems: Vec<String>,
}

impl Verdict {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

pub fn check(h: &History) -> Verdict {
    let mut v = Verdict::default();
    for p in &h.violations {
        v.problem(p.clone());
    }
    // Every 202 names its own message: two client_ids never share one.
    let mut by_id: HashMap<&str, &SendOp> = HashMap::new();
    for s in &h.sends {
        if let Some(id) = &s.accepted {
            v.accepted += 1;
            if by_id.insert(id.as_str(), s).is_some() {
                v.duplicated += 1;
                v.problem(format!("message {id} answered 202 to two different sends"));
            }
        }
    }
    // A body names its send: bodies are unique per run.
    let by_body: HashMap<&str, &SendOp> = h.sends.iter().map(|s| (s.body.as_str(), s)).collect();

    for (k, history) in h.histories.iter().enumerate() {
        let members = [2 * k, 2 * k + 1];
        let expected: Vec<&SendOp> = h
            .sends
            .iter()
            .filter(|s| members.contains(&s.from) && s.accepted.is_some())
            .collect();
        v.duplicated += duplicates(history);
        let in_history: HashSet<&str> = history.iter().map(|m| m.id.as_str()).collect();
        for s in &expected {
            let id = s.accepted.as_deref().unwrap_or_default();
            if !in_history.contains(id) {
                v.lost += 1;
                v.problem(format!("202 {id} ({}) is not in history {k}", s.body));
            }
        }
        // Nothing appears that was not sent: a message without a 202 must
        // be one of its sender's own retried client_ids.
        for m in history {
            match by_body.get(m.body.as_str()) {
                Some(s) if s.accepted.as_deref() == Some(m.id.as_str()) => {}
                Some(s) if s.accepted.is_none() && members.contains(&s.from) => {
                    eprintln!(
                        "history {k}: {} ({}) landed without a 202 to client_id {}",
                        m.id, m.body, s.client_id
                    );
                }
                _ => v.problem(format!(
                    "history {k} holds {} ({}) that no client was answered 202 for",
                    m.id, m.body
                )),
            }
        }
        // Each sender's messages in the order its 202s came.
        for from in members {
            let order: Vec<&str> = expected
                .iter()
                .filter(|s| s.from == from)
                .filter_map(|s| s.accepted.as_deref())
                .collect();
            in_send_order(&mut v, &format!("history {k}"), from, &order, history);
            for user in members {
                let what = format!("user {user}'s sync");
                in_send_order(&mut v, &what, from, &order, &h.streams[user]);
            }
        }
        // Both participants' sync: every message of the history, once.
        for user in members {
            let stream = &h.streams[user];
            v.duplicated += duplicates(stream);
            let mut once = HashSet::new();
            for m in stream.iter().filter(|m| !once.insert(m.id.as_str())) {
                let retries = by_body.get(m.body.as_str()).map_or(0, |s| s.retries);
                v.problem(format!(
                    "user {user} received {} ({}) twice; its send was answered {retries} \
                     time(s) without a 202 before",
                    m.id, m.body
                ));
            }
            let got: HashSet<&str> = stream.iter().map(|m| m.id.as_str()).collect();
            for s in &expected {
                let id = s.accepted.as_deref().unwrap_or_default();
                if !got.contains(id) {
                    v.lost += 1;
                    v.problem(format!("user {user} never received 202 {id} ({})", s.body));
                }
            }
            let history_ids: HashSet<&str> = history.iter().map(|m| m.id.as_str()).collect();
            if got != history_ids {
                v.problem(format!(
                    "user {user}'s sync holds {} messages, history {k} {}, {} in common",
                    got.len(),
                    history_ids.len(),
                    got.intersection(&history_ids).count()
                ));
            }
        }
        // The log's order, which both participants' syncs follow.
        let [a, b] = members.map(|u| first_occurrences(&h.streams[u]));
        if a != b {
            let at = a.iter().zip(&b).position(|(x, y)| x != y);
            v.problem(format!(
                "conversation {k}: the two participants' syncs disagree on order (at {at:?})"
            ));
        }
    }
    v
}

/// `from`'s messages in `list` come in the order of their 202s.
fn in_send_order(v: &mut Verdict, what: &str, from: usize, order: &[&str], list: &[Seen]) {
    let present: HashSet<&str> = list.iter().map(|m| m.id.as_str()).collect();
    let want: Vec<&str> = order
        .iter()
        .copied()
        .filter(|id| present.contains(id))
        .collect();
    let got: Vec<&str> = first_occurrences(list)
        .into_iter()
        .filter(|id| order.contains(id))
        .collect();
    if got != want {
        v.problem(format!("{what}: user {from}'s messages out of send order"));
    }
}

fn first_occurrences(list: &[Seen]) -> Vec<&str> {
    let mut once = HashSet::new();
    list.iter()
        .map(|m| m.id.as_str())
        .filter(|id| once.insert(*id))
        .collect()
}

fn duplicates(list: &[Seen]) -> usize {
    let mut seen = HashSet::new();
    list.iter().filter(|m| !seen.insert(m.id.as_str())).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str) -> Seen {
        Seen {
            id: id.to_owned(),
            body: format!("b{id}"),
        }
    }

    fn send(from: usize, id: &str, accepted: bool) -> SendOp {
        SendOp {
            from,
            client_id: format!("c{id}"),
            body: format!("b{id}"),
            accepted: accepted.then(|| id.to_owned()),
            retries: 0,
        }
    }

    /// Users 0 and 1: 0 sent m1 and m3, 1 sent m2; all seen everywhere.
    fn clean() -> History {
        let all = vec![seen("m1"), seen("m2"), seen("m3")];
        History {
            sends: vec![
                send(0, "m1", true),
                send(1, "m2", true),
                send(0, "m3", true),
            ],
            streams: vec![all.clone(), all.clone()],
            histories: vec![all],
            violations: vec![],
        }
    }

    #[test]
    fn a_complete_history_passes() {
        let v = check(&clean());
        assert_eq!((v.accepted, v.lost, v.duplicated), (3, 0, 0));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn a_202_missing_from_one_sync_is_lost() {
        let mut h = clean();
        h.streams[1].remove(1);
        let v = check(&h);
        assert_eq!(v.lost, 1);
    }

    #[test]
    fn a_frame_received_twice_is_a_duplicate() {
        let mut h = clean();
        h.streams[0].push(seen("m1"));
        assert_eq!(check(&h).duplicated, 1);
    }

    #[test]
    fn a_message_nobody_was_answered_202_for_is_reported() {
        let mut h = clean();
        h.histories[0].push(seen("x9"));
        assert!(!check(&h).problems.is_empty());
        // Unless it is its sender's own retried send.
        let mut h = clean();
        h.sends.push(send(1, "x9", false));
        for list in h.streams.iter_mut().chain(&mut h.histories) {
            list.push(seen("x9"));
        }
        assert!(check(&h).problems.is_empty());
    }

    #[test]
    fn syncs_that_disagree_on_order_are_reported() {
        let mut h = clean();
        h.streams[1].swap(0, 1);
        assert!(!check(&h).problems.is_empty());
    }

    #[test]
    fn a_senders_messages_out_of_order_are_reported() {
        let mut h = clean();
        for list in h.streams.iter_mut().chain(&mut h.histories) {
            list.swap(0, 2);
        }
        assert!(!check(&h).problems.is_empty());
    }
}
