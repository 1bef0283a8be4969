//! Exactly once, in order: what one subscriber saw of one channel, against what was sent.

/// Lost, duplicated and reordered deliveries, summed over subscribers and channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Deliveries expected (messages sent × subscribers of their channel).
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Expected but never received.
    pub lost: u64,
    /// Received more than once (each extra copy counts).
    pub duplicated: u64,
    /// Received after a message published later than it.
    pub reordered: u64,
    /// Carrying a number outside what was sent.
    pub unexpected: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.expected += o.expected;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.unexpected += o.unexpected;
    }

    /// Every subscriber got every message exactly once, in order.
    pub(crate) fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.unexpected == 0
    }
}

/// One subscriber's view of one channel whose messages are numbered `0..expected`.
///
/// A bitset rather than "next expected number", so a duplicate is told apart from a
/// late (reordered) message, and the loss count is exact even after a reordering.
#[derive(Debug, Clone)]
pub(crate) struct OrderCheck {
    seen: Vec<u64>,
    expected: u32,
    /// Highest number received so far, plus one (0: nothing yet).
    high: u32,
    received: u32,
    duplicated: u32,
    reordered: u32,
    unexpected: u32,
}

/// What a delivery was, for the caller's own bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time (in order or not).
    New,
    Duplicate,
    Unexpected,
}

impl OrderCheck {
    pub(crate) fn new(expected: u32) -> OrderCheck {
        OrderCheck {
            seen: vec![0; (expected as usize).div_ceil(64)],
            expected,
            high: 0,
            received: 0,
            duplicated: 0,
            reordered: 0,
            unexpected: 0,
        }
    }

    pub(crate) fn record(&mut self, seq: u32) -> Seen {
        if seq >= self.expected {
            self.unexpected += 1;
            return Seen::Unexpected;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return Seen::Duplicate;
        }
        self.seen[word] |= bit;
        self.received += 1;
        if seq + 1 < self.high {
            self.reordered += 1;
        }
        self.high = self.high.max(seq + 1);
        Seen::New
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            expected: u64::from(self.expected),
            received: u64::from(self.received),
            lost: u64::from(self.expected - self.received),
            duplicated: u64::from(self.duplicated),
            reordered: u64::from(self.reordered),
            unexpected: u64::from(self.unexpected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(expected: u32, seqs: &[u32]) -> Counts {
        let mut c = OrderCheck::new(expected);
        for s in seqs {
            c.record(*s);
        }
        c.counts()
    }

    #[test]
    fn in_order_and_complete() {
        let c = counts_of(100, &(0..100).collect::<Vec<_>>());
        assert!(c.ok());
        assert_eq!(c.received, 100);
        assert_eq!(c.expected, 100);
    }

    #[test]
    fn a_gap_is_lost() {
        let c = counts_of(5, &[0, 1, 3, 4]);
        assert_eq!(c.lost, 1);
        assert_eq!(c.reordered, 0);
        assert!(!c.ok());
        // Nothing at all: everything lost.
        assert_eq!(counts_of(70, &[]).lost, 70);
    }

    #[test]
    fn duplicates_are_told_from_late_arrivals() {
        let c = counts_of(4, &[0, 1, 1, 2, 3, 3, 3]);
        assert_eq!((c.duplicated, c.reordered, c.lost), (3, 0, 0));
        let c = counts_of(4, &[0, 2, 1, 3]);
        assert_eq!((c.duplicated, c.reordered, c.lost), (0, 1, 0));
        // A duplicate of an early message after later ones is a duplicate, not a reorder.
        let c = counts_of(3, &[0, 1, 2, 0]);
        assert_eq!((c.duplicated, c.reordered), (1, 0));
    }

    #[test]
    fn numbers_outside_the_run_are_unexpected() {
        let mut c = OrderCheck::new(2);
        assert_eq!(c.record(0), Seen::New);
        assert_eq!(c.record(2), Seen::Unexpected);
        assert_eq!(c.record(0), Seen::Duplicate);
        assert_eq!(c.record(1), Seen::New);
        assert_eq!(c.counts().lost, 0);
        assert_eq!(c.counts().unexpected, 1);
    }

    #[test]
    fn counts_add_up() {
        let mut total = Counts::default();
        total.add(&counts_of(3, &[0, 1, 2]));
        total.add(&counts_of(3, &[0, 2]));
        assert_eq!((total.expected, total.received, total.lost), (6, 5, 1));
    }
}
