// Passkeys (WebAuthn): the button of the second-factor and passkey pages hands the server's options to the
// browser's authenticator and posts what it answers in the button's form. Loaded as a file: the pages'
// Content-Security-Policy allows scripts from this origin only.
"use strict";

function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
}

function toB64url(buffer) {
  let bin = "";
  for (const byte of new Uint8Array(buffer)) bin += String.fromCharCode(byte);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function withIds(list) {
  return (list || []).map((c) => Object.assign({}, c, { id: fromB64url(c.id) }));
}

async function create(options) {
  options.challenge = fromB64url(options.challenge);
  options.user.id = fromB64url(options.user.id);
  options.excludeCredentials = withIds(options.excludeCredentials);
  const cred = await navigator.credentials.create({ publicKey: options });
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: toB64url(cred.response.clientDataJSON),
      attestationObject: toB64url(cred.response.attestationObject),
      transports: cred.response.getTransports ? cred.response.getTransports() : [],
    },
  };
}

async function get(options) {
  options.challenge = fromB64url(options.challenge);
  options.allowCredentials = withIds(options.allowCredentials);
  const cred = await navigator.credentials.get({ publicKey: options });
  const r = cred.response;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: toB64url(r.clientDataJSON),
      authenticatorData: toB64url(r.authenticatorData),
      signature: toB64url(r.signature),
      userHandle: r.userHandle ? toB64url(r.userHandle) : null,
    },
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("passkey-button");
  if (!button) return;
  if (!window.PublicKeyCredential) {
    button.hidden = true;
    return;
  }
  const failed = document.getElementById("passkey-failed");
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    const form = button.form;
    const options = JSON.parse(button.dataset.options);
    try {
      const answer = button.dataset.ceremony === "create" ? await create(options) : await get(options);
      form.elements.passkey.value = JSON.stringify(answer);
      form.submit();
    } catch (err) {
      if (failed) failed.hidden = false;
    }
  });
});
