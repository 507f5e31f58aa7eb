//! The server's bounds: connection attempts per address (a token bucket each, in a map of
//! bounded size), connections still signing in and participant sessions (each all together
//! and per address), and the refusals counted for the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Addresses remembered at most; beyond it, new addresses wait until old ones refill.
const MAX_ADDRESSES: usize = 10_000;

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    RateLimited,
    TooManyPending,
    Full,
    /// The address already holds as many sessions as one address may.
    AddressFull,
    /// The address already has as many connections signing in as one address may.
    AddressPending,
    Stopping,
}

/// A token bucket per address: `per_minute` attempts a minute, as many at once.
pub(crate) struct RateLimiter {
    per_minute: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self { per_minute: f64::from(per_minute.max(1)), buckets: HashMap::new() }
    }

    fn level(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute)
    }

    /// Whether `addr` may make an attempt at `now` (taking a token if so).
    pub(crate) fn allow(&mut self, addr: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&addr) && self.buckets.len() >= MAX_ADDRESSES {
            // Forget the addresses whose buckets are full again: they are as new.
            let full = self.per_minute;
            let keep: HashMap<_, _> =
                self.buckets.iter().filter(|(_, b)| self.level(**b, now) < full).map(|(a, b)| (*a, *b)).collect();
            self.buckets = keep;
            if self.buckets.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let level = self.buckets.get(&addr).map_or(self.per_minute, |b| self.level(*b, now));
        if level < 1.0 {
            self.buckets.insert(addr, (level, now));
            return false;
        }
        self.buckets.insert(addr, (level - 1.0, now));
        true
    }
}

/// A place counted among a bounded number (connections signing in, participant sessions);
/// given back when dropped.
pub(crate) struct CountedPlace(Arc<AtomicUsize>);

impl CountedPlace {
    /// A place if fewer than `max` are taken.
    pub(crate) fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        take_place(count, max).then(|| Self(count.clone()))
    }
}

impl Drop for CountedPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The places each address holds (only addresses holding one: at most as many entries
/// as places).
#[derive(Default)]
pub(crate) struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// A place in its address's count; given back when dropped.
pub(crate) struct AddressPlace {
    of: Arc<PerAddress>,
    addr: IpAddr,
}

impl PerAddress {
    /// A place for `addr` if it holds fewer than `max`.
    pub(crate) fn take(this: &Arc<Self>, addr: IpAddr, max: usize) -> Option<AddressPlace> {
        let mut held = this.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.get(&addr).copied().unwrap_or(0);
        if n >= max {
            return None;
        }
        held.insert(addr, n + 1);
        Some(AddressPlace { of: this.clone(), addr })
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut held = self.of.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.addr);
            }
        }
    }
}

/// A connection's places, among all (signing in, or participant sessions) and among its
/// address's (none for an address not counted); given back when dropped.
pub(crate) struct Place {
    _total: CountedPlace,
    _address: Option<AddressPlace>,
}

impl Place {
    pub(crate) fn new(total: CountedPlace, address: Option<AddressPlace>) -> Self {
        Self { _total: total, _address: address }
    }
}

fn take_place(count: &AtomicUsize, max: usize) -> bool {
    count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).is_ok()
}

/// The window each participant's screens run in, by connection number, with the flag that
/// tells it to close: a participant who signs in again (a second window, a reconnect
/// before the old connection timed out) goes on in the newest connection, and the other
/// closes, whichever claims first (a screen whose store was slow to open claims late).
#[derive(Default)]
pub(crate) struct Windows(Mutex<HashMap<String, (u64, Arc<AtomicBool>)>>);

impl Windows {
    /// Connection `connection` runs `participant`'s screens unless a newer one does (then
    /// `closing` is set at once); returns the older connection it closes, if any.
    pub(crate) fn claim(&self, participant: &str, connection: u64, closing: Arc<AtomicBool>) -> Option<u64> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match held.get(participant) {
            Some((newer, _)) if *newer > connection => {
                closing.store(true, Ordering::Relaxed);
                None
            }
            _ => {
                let (before, flag) = held.insert(participant.to_string(), (connection, closing))?;
                (before != connection).then(|| {
                    flag.store(true, Ordering::Relaxed);
                    before
                })
            }
        }
    }

    /// Connection `connection`'s screens ended: it holds its participant no more (unless a
    /// newer one holds them).
    pub(crate) fn release(&self, participant: &str, connection: u64) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(participant).is_some_and(|(c, _)| *c == connection) {
            held.remove(participant);
        }
    }
}

/// Refusals since the log last said.
#[derive(Default)]
pub(crate) struct RefusalCounts {
    rate: u64,
    pending: u64,
    full: u64,
    address: u64,
    address_pending: u64,
}

impl RefusalCounts {
    pub(crate) fn add(&mut self, why: Refusal) {
        match why {
            Refusal::RateLimited => self.rate += 1,
            Refusal::TooManyPending => self.pending += 1,
            Refusal::Full => self.full += 1,
            Refusal::AddressFull => self.address += 1,
            Refusal::AddressPending => self.address_pending += 1,
            Refusal::Stopping => {}
        }
    }

    pub(crate) fn take_summary(&mut self) -> Option<String> {
        let parts: Vec<String> = [
            (self.rate, "too many attempts from one address"),
            (self.pending, "too many connections signing in at once"),
            (self.full, "the study was full"),
            (
                self.address,
                "too many sessions from one address: raise --max-sessions-per-address for a class behind one NAT",
            ),
            (
                self.address_pending,
                "too many connections signing in from one address: raise --max-pending-per-address for a class behind one NAT",
            ),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} ({why})"))
        .collect();
        *self = Self::default();
        (!parts.is_empty()).then(|| format!("refused connections: {}", parts.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_address_gets_its_burst_then_waits_while_others_go_on() {
        let mut r = RateLimiter::new(6);
        let t = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!((0..10).filter(|_| r.allow(a, t)).count(), 6, "the burst");
        assert!(r.allow(b, t), "another address is not held up");
        assert!(!r.allow(a, t + Duration::from_secs(5)), "6 a minute: one per 10 s");
        assert!(r.allow(a, t + Duration::from_secs(11)));
        assert!(!r.allow(a, t + Duration::from_secs(12)));
    }

    #[test]
    fn the_map_of_addresses_stays_bounded() {
        let mut r = RateLimiter::new(1);
        let t = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            r.allow(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(r.buckets.len() <= MAX_ADDRESSES);
        // A minute later every bucket is full again, so new addresses get in.
        assert!(r.allow("10.9.9.9".parse().unwrap(), t + Duration::from_secs(61)));
    }

    #[test]
    fn an_address_holds_at_most_its_share_of_sessions_and_gives_them_back() {
        let held = Arc::new(PerAddress::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = PerAddress::take(&held, a, 2).unwrap();
        let _second = PerAddress::take(&held, a, 2).unwrap();
        assert!(PerAddress::take(&held, a, 2).is_none());
        assert!(PerAddress::take(&held, b, 2).is_some(), "another address is not held up");
        drop(first);
        let _third = PerAddress::take(&held, a, 2).unwrap();
        drop(_third);
        drop(_second);
        assert!(held.0.lock().unwrap().is_empty(), "an address holding none is forgotten");
    }

    #[test]
    fn places_are_bounded_and_freed() {
        let n = Arc::new(AtomicUsize::new(0));
        let a = CountedPlace::take(&n, 2).unwrap();
        let _b = CountedPlace::take(&n, 2).unwrap();
        assert!(CountedPlace::take(&n, 2).is_none());
        drop(a);
        assert!(CountedPlace::take(&n, 2).is_some());
    }

    #[test]
    fn the_newest_connection_holds_the_participant_whichever_claims_first() {
        let w = Windows::default();
        let flag = || Arc::new(AtomicBool::new(false));
        let (one, two, three) = (flag(), flag(), flag());
        assert_eq!(w.claim("p", 1, one.clone()), None);
        assert_eq!(w.claim("p", 2, two.clone()), Some(1), "a newer window closes the older");
        assert!(one.load(Ordering::Relaxed) && !two.load(Ordering::Relaxed));
        // An older connection claiming late closes itself, not the newer one.
        let late = flag();
        assert_eq!(w.claim("p", 0, late.clone()), None);
        assert!(late.load(Ordering::Relaxed) && !two.load(Ordering::Relaxed));
        // The old window's end does not release the new one's hold.
        w.release("p", 1);
        assert_eq!(w.claim("p", 3, three.clone()), Some(2));
        w.release("p", 3);
        assert_eq!(w.claim("p", 4, flag()), None, "released: nobody to close");
        assert_eq!(w.claim("q", 1, flag()), None, "participants apart");
    }
}
