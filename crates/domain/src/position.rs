//! Places in the log. The embedded log has one partition; Kafka has
//! several, each totally ordered and none ordered against another, so
//! "how far" is one offset per partition.

/// Where an event sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub partition: u32,
    pub offset: i64,
}

/// For each partition, the highest offset handled so far (inclusive), or
/// nothing. It says how far a consumer, a ws-push instance or a client's
/// socket has come; it is what a sync token carries.
///
/// Trailing empty partitions are never stored, so two watermarks that
/// cover the same positions are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Watermark(Vec<Option<i64>>);

impl Watermark {
    /// One slot per partition, from partition 0.
    pub fn from_slots(mut slots: Vec<Option<i64>>) -> Self {
        while slots.last() == Some(&None) {
            slots.pop();
        }
        Self(slots)
    }

    /// One slot per partition up to the last non-empty one.
    pub fn slots(&self) -> &[Option<i64>] {
        &self.0
    }

    /// The highest offset covered in `partition`.
    pub fn get(&self, partition: u32) -> Option<i64> {
        self.0.get(partition as usize).copied().flatten()
    }

    pub fn advance(&mut self, pos: LogPosition) {
        let p = pos.partition as usize;
        if self.0.len() <= p {
            self.0.resize(p + 1, None);
        }
        let slot = &mut self.0[p];
        if slot.is_none_or(|o| o < pos.offset) {
            *slot = Some(pos.offset);
        }
    }

    /// Covers, afterwards, everything either covered.
    pub fn join(&mut self, other: &Watermark) {
        for pos in other.partitions() {
            self.advance(pos);
        }
    }

    pub fn covers(&self, pos: LogPosition) -> bool {
        self.get(pos.partition).is_some_and(|o| o >= pos.offset)
    }

    /// True when every position `other` covers, `self` covers too.
    pub fn covers_all(&self, other: &Watermark) -> bool {
        other.partitions().all(|p| self.covers(p))
    }

    pub fn partitions(&self) -> impl Iterator<Item = LogPosition> + '_ {
        self.0.iter().enumerate().filter_map(|(p, o)| {
            o.map(|offset| LogPosition {
                partition: p as u32,
                offset,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: u32, offset: i64) -> LogPosition {
        LogPosition { partition, offset }
    }

    #[test]
    fn watermark_covers() {
        let mut w = Watermark::default();
        assert!(!w.covers(p(0, 0)));
        w.advance(p(0, 5));
        w.advance(p(0, 3));
        assert!(w.covers(p(0, 5)) && !w.covers(p(0, 6)) && !w.covers(p(1, 0)));
        let mut other = Watermark::default();
        other.advance(p(0, 4));
        assert!(w.covers_all(&other));
        other.advance(p(2, 1));
        assert!(!w.covers_all(&other));
    }

    #[test]
    fn a_join_covers_what_either_side_covered_and_no_more() {
        let mut a = Watermark::default();
        a.advance(p(0, 7));
        a.advance(p(2, 1));
        let mut b = Watermark::default();
        b.advance(p(0, 3));
        b.advance(p(1, 9));
        let mut j = a.clone();
        j.join(&b);
        assert!(j.covers_all(&a) && j.covers_all(&b));
        assert_eq!(j.slots(), &[Some(7), Some(9), Some(1)]);
    }

    #[test]
    fn trailing_empty_partitions_do_not_make_watermarks_differ() {
        let w = Watermark::from_slots(vec![Some(1), None, None]);
        let mut v = Watermark::default();
        v.advance(p(0, 1));
        assert_eq!(w, v);
    }
}
