// Server-sent events: several events with small delays, so a proxy that buffers the response
// (instead of streaming it) is visible as a first event that arrives only at the end.
export const dynamic = 'force-dynamic';
export const runtime = 'nodejs';

const COUNT = 5;
const DELAY_MS = 400;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function GET(request) {
  const encoder = new TextEncoder();
  const userId = request.headers.get('x-user-id');
  const stream = new ReadableStream({
    async start(controller) {
      try {
        for (let i = 1; i <= COUNT; i++) {
          if (request.signal.aborted) break;
          const data = JSON.stringify({ seq: i, at: new Date().toISOString(), userId });
          controller.enqueue(encoder.encode(`id: ${i}\ndata: ${data}\n\n`));
          if (i < COUNT) await sleep(DELAY_MS);
        }
        controller.enqueue(encoder.encode('event: done\ndata: {}\n\n'));
      } finally {
        try { controller.close(); } catch { /* client went away */ }
      }
    },
  });
  return new Response(stream, {
    headers: {
      'Content-Type': 'text/event-stream; charset=utf-8',
      // no-transform keeps Next's gzip (and any proxy) from buffering the stream.
      'Cache-Control': 'no-cache, no-transform',
      'X-Accel-Buffering': 'no',
    },
  });
}
