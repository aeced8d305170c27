/** @type {import('next').NextConfig} */
const nextConfig = {
  // The Docker image (examples/nextjs/Dockerfile) sets NEXT_STANDALONE=1 to get a
  // self-contained server in .next/standalone; `next start` (demo.sh, e2e.sh) uses the
  // regular output.
  output: process.env.NEXT_STANDALONE === '1' ? 'standalone' : undefined,
  poweredByHeader: false,
  reactStrictMode: true,
};

export default nextConfig;
