import { pbkdf2Sha256 } from '../../shared/auth/password-hash.js';

/**
 * A real PBKDF2 derivation (PasswordChecksOptions.derive) that starts only once the test calls
 * `open()`, so password checks can be held in flight; `started` counts derivations asked for.
 */
export function heldDerivation() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const state = {
    started: 0,
    open,
    derive: async (...args: Parameters<typeof pbkdf2Sha256>) => {
      state.started++;
      await opened;
      return pbkdf2Sha256(...args);
    },
  };
  return state;
}
