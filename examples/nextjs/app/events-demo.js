'use client';

import { useEffect, useState } from 'react';

// Consumes /api/events through the sidecar: proves server-sent events are not buffered.
export default function EventsDemo() {
  const [events, setEvents] = useState([]);
  useEffect(() => {
    const es = new EventSource('/api/events');
    es.onmessage = (e) => setEvents((prev) => [...prev, e.data]);
    es.addEventListener('done', () => es.close());
    es.onerror = () => es.close();
    return () => es.close();
  }, []);
  return (
    <section>
      <h2>Server-sent events</h2>
      <ul>{events.map((e, i) => <li key={i}><code>{e}</code></li>)}</ul>
    </section>
  );
}
