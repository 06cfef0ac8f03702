// A bounded, append-only log whose entries carry contiguous sequence numbers (1, 2, 3, ...).
// Keeps at most `capacity` entries and (approximately) at most `maxBytes` bytes; the oldest
// entries are dropped first. Because sequence numbers are contiguous, lookups by sequence
// number are O(1).

export class RingLog {
  constructor({ capacity, maxBytes = Infinity }) {
    if (!(capacity >= 1)) throw new Error('RingLog capacity must be >= 1');
    this.capacity = capacity;
    this.maxBytes = maxBytes;
    this.items = [];
    this.sizes = [];
    this.head = 0; // index in items of the oldest retained entry
    this.bytes = 0;
    this.lastSeq = 0; // seq of the newest entry ever appended (0 = none)
  }

  get count() {
    return this.items.length - this.head;
  }

  // seq of the oldest retained entry (lastSeq + 1 when empty)
  get firstSeq() {
    return this.lastSeq - this.count + 1;
  }

  // number of entries ever dropped to stay within bounds
  get dropped() {
    return this.lastSeq - this.count;
  }

  // make(seq) builds the entry; size is its approximate byte cost.
  append(make, size = 0) {
    const seq = this.lastSeq + 1;
    const item = make(seq);
    this.lastSeq = seq;
    this.items.push(item);
    this.sizes.push(size);
    this.bytes += size;
    while (this.count > this.capacity || (this.bytes > this.maxBytes && this.count > 1)) {
      this.bytes -= this.sizes[this.head];
      this.items[this.head] = undefined;
      this.sizes[this.head] = 0;
      this.head += 1;
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  // Up to `limit` entries with seq > since, oldest first.
  after(since, limit = Infinity) {
    const start = Math.max(since + 1, this.firstSeq);
    if (start > this.lastSeq || limit <= 0) return [];
    const idx = this.head + (start - this.firstSeq);
    const end = limit === Infinity ? this.items.length : Math.min(this.items.length, idx + limit);
    return this.items.slice(idx, end);
  }

  // The newest `limit` entries, oldest first.
  tail(limit) {
    if (limit <= 0) return [];
    const start = Math.max(this.head, this.items.length - limit);
    return this.items.slice(start);
  }

  last() {
    return this.count > 0 ? this.items[this.items.length - 1] : undefined;
  }
}

// A feed of numbered events (ids 1, 2, 3, ... of this process) with a bounded replay ring and
// subscribers that each have a bounded queue. publish() serialises an event once; a subscriber
// that falls behind by more than `bound` queued events (or `boundBytes` of them) loses the
// oldest and is told how many through its lag(missed) callback before the next event it gets.
export class FeedHub {
  constructor({ ringCapacity = 4096, ringBytes = 32 * 1024 * 1024, bound = 1000, boundBytes = 8 * 1024 * 1024 } = {}) {
    this.ring = new RingLog({ capacity: ringCapacity, maxBytes: ringBytes });
    this.bound = bound;
    this.boundBytes = boundBytes;
    this.subscribers = new Set();
  }

  get lastId() {
    return this.ring.lastSeq;
  }

  // event: the SSE event name; payload: a JSON-able object.
  publish(event, payload) {
    const data = JSON.stringify(payload);
    const item = this.ring.append((id) => ({ id, event, data }), 64 + data.length);
    for (const sub of this.subscribers) sub.offer(item);
    return item;
  }

  // Events still in the ring after `since`, and how many after `since` are no longer there.
  replay(since) {
    let missed = 0;
    if (since > this.ring.lastSeq) since = 0; // an id of an earlier process: replay what we have
    if (since < this.ring.firstSeq - 1) missed = this.ring.firstSeq - 1 - since;
    return { items: this.ring.after(since), missed };
  }

  // write(item) -> bool (false = the consumer is full; call resume() when it drained)
  // lag(missed): called before the next item after drops.
  subscribe({ write, lag }) {
    const sub = {
      queue: [],
      queuedBytes: 0,
      missed: 0,
      paused: false,
      offer: (item) => {
        if (sub.paused) {
          sub.queue.push(item);
          sub.queuedBytes += item.data.length;
          while (sub.queue.length > this.bound || (sub.queuedBytes > this.boundBytes && sub.queue.length > 1)) {
            sub.queuedBytes -= sub.queue.shift().data.length;
            sub.missed += 1;
          }
          return;
        }
        if (!write(item)) sub.paused = true;
      },
      resume: () => {
        sub.paused = false;
        if (sub.missed > 0) {
          const m = sub.missed;
          sub.missed = 0;
          if (!lag(m)) {
            sub.paused = true;
            return;
          }
        }
        while (sub.queue.length > 0) {
          const item = sub.queue.shift();
          sub.queuedBytes -= item.data.length;
          if (!write(item)) {
            sub.paused = true;
            return;
          }
        }
      },
      close: () => this.subscribers.delete(sub),
    };
    this.subscribers.add(sub);
    return sub;
  }
}
