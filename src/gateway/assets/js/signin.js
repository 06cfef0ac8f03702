// The sign-in form: trades a pairing code for a token (POST /pair) and keeps the token.

import { pair, saveToken } from './api.js';

export function showSignIn(message, onSignedIn) {
  const root = document.getElementById('signin');
  const form = document.getElementById('signin-form');
  const input = document.getElementById('signin-code');
  const error = document.getElementById('signin-error');
  const submit = document.getElementById('signin-submit');
  document.getElementById('app').hidden = true;
  root.hidden = false;
  error.textContent = message || '';
  input.value = '';
  input.focus();
  form.onsubmit = async (e) => {
    e.preventDefault();
    const code = input.value.trim();
    if (!code) {
      error.textContent = 'Type the pairing code that `revka pair` printed.';
      input.focus();
      return;
    }
    submit.disabled = true;
    error.textContent = '';
    try {
      const answer = await pair(code);
      saveToken(answer.token);
      root.hidden = true;
      onSignedIn();
    } catch (err) {
      error.textContent = err.status === 401
        ? `That code was not accepted (${err.message}). Codes are single-use and expire; get a new one with \`revka pair\`.`
        : `Cannot sign in: ${err.message}`;
      input.select();
    } finally {
      submit.disabled = false;
    }
  };
}
