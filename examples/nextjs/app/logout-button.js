'use client';

import { useState } from 'react';

export default function LogoutButton() {
  const [status, setStatus] = useState('');
  async function logout() {
    const res = await fetch('/api/auth/logout', { method: 'POST', credentials: 'include' });
    setStatus(res.ok ? 'Signed out: this session token no longer works.' : `Logout failed: HTTP ${res.status}`);
  }
  return (
    <p>
      <button type="button" onClick={logout}>Sign out</button> <span>{status}</span>
    </p>
  );
}
