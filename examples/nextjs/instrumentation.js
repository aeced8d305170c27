// Next.js calls register() once when the server starts. With an OTLP endpoint in the
// environment (the standard OTEL_* variables, as the sidecar reads them), @vercel/otel
// traces the app and exports to that collector over OTLP/HTTP (http/protobuf, or http/json
// with OTEL_EXPORTER_OTLP_PROTOCOL). Next.js continues the trace of the traceparent the
// sidecar sends, so the app's spans are children of the sidecar's span for that request.
// Without an endpoint nothing is set up and nothing is exported.
export async function register() {
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT && !process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
    return;
  }
  const { registerOTel } = await import('@vercel/otel');
  registerOTel({ serviceName: process.env.OTEL_SERVICE_NAME || 'authsidecar-example-app' });
}
