export const metadata = {
  title: 'authsidecar example',
  description: 'Next.js app behind the authsidecar session-auth sidecar',
};

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: 'system-ui, sans-serif', maxWidth: 720, margin: '2rem auto', padding: '0 1rem' }}>
        {children}
      </body>
    </html>
  );
}
