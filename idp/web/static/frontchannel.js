// OpenID Connect Front-Channel Logout: the page holds one hidden frame per client to tell, and goes on by
// itself (the auto-POST form "saml-post", else the link "go-on") once they have loaded, so that leaving the
// page does not cut them off. The window's load event waits for every frame; a client that does not answer
// holds the person back WAIT_MS at most. Loaded as a file with the page's nonce: the Content-Security-Policy
// lets no other script run.
"use strict";

(function () {
  const WAIT_MS = 2500;
  let gone = false;

  function goOn() {
    if (gone) return;
    gone = true;
    const form = document.getElementById("saml-post");
    const link = document.getElementById("go-on");
    if (form) form.submit();
    else if (link) window.location.assign(link.href);
  }

  if (document.readyState === "complete") goOn();
  else window.addEventListener("load", goOn);
  window.setTimeout(goOn, WAIT_MS);
})();
