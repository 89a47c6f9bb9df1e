// Guanaco beta page: chat with a routed model or compare two in a battle, then vote or leave feedback.
// It talks only to this service's beta routes, authenticated by the invite token in the page's URL.
// Everything a model or a user wrote is shown with textContent, never parsed as HTML.
"use strict";

const token = new URLSearchParams(window.location.search).get("invite") || "";
const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  mode: "chat",
  busy: false,
  chat: { id: null, closed: false, lastReply: null, feedbackKey: null },
  battle: { id: null, voted: false, last: { a: null, b: null } },
};

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path, body) {
  const options = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, "the Guanaco service cannot be reached; check your connection and try again");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `the service answered ${response.status}`;
    throw new ApiError(response.status, detail);
  }
  return data;
}

// ---- what the tester sees ------------------------------------------------------------------------------

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function showOnly(viewId) {
  for (const id of ["problem-view", "consent-view", "app-view"]) {
    $(id).hidden = id !== viewId;
  }
}

function showProblem(title, detail) {
  $("problem-title").textContent = title;
  $("problem-detail").textContent = `${detail.charAt(0).toUpperCase()}${detail.slice(1)}.`;
  showOnly("problem-view");
  setStatus("");
}

function addMessage(log, sender, text, kind) {
  const item = document.createElement("li");
  item.className = `msg ${kind}`;
  const name = document.createElement("span");
  name.className = "sender";
  name.textContent = sender;
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(name, body);
  log.append(item);
  log.scrollTop = log.scrollHeight;
  return item;
}

function setMessageText(item, text, kind) {
  item.className = `msg ${kind}`;
  item.querySelector(".text").textContent = text;
  item.parentElement.scrollTop = item.parentElement.scrollHeight;
}

function pendingReply(log, sender) {
  return addMessage(log, sender, "writing…", "bot pending");
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  refreshControls();
}

function refreshControls() {
  const chat = state.chat;
  $("chat-regenerate").disabled = state.busy || chat.closed || !chat.lastReply;
  const battle = state.battle;
  const canVote = !state.busy && battle.id && !battle.voted && battle.last.a && battle.last.b;
  for (const button of $("vote").querySelectorAll("button")) {
    button.disabled = !canVote;
  }
  $("regenerate-a").disabled = !canVote;
  $("regenerate-b").disabled = !canVote;
}

function explain(error, doing) {
  if (error.status === 401) {
    showProblem("This invite does not work", error.message);
  } else if (error.status === 403 && error.message.startsWith("consent needed")) {
    showConsent();
  } else if (error.status === 503) {
    setStatus(`${doing}: ${error.message}. Try again in a few minutes.`, true);
  } else {
    setStatus(`${doing}: ${error.message}.`, true);
  }
}

// ---- consent ---------------------------------------------------------------------------------------------

function showConsent() {
  $("consent-notice").textContent = state.me.consent_notice;
  showOnly("consent-view");
  setStatus("Read this first, then tick the box to start.");
}

async function giveConsent() {
  $("consent-button").disabled = true;
  try {
    state.me = await api("POST", "/beta/app/consent");
    showApp();
  } catch (error) {
    $("consent-button").disabled = !$("consent-box").checked;
    explain(error, "Could not record your consent");
  }
}

// ---- modes -----------------------------------------------------------------------------------------------

function showApp() {
  showOnly("app-view");
  setMode(state.mode);
}

function setMode(mode) {
  state.mode = mode;
  $("mode-chat").setAttribute("aria-pressed", String(mode === "chat"));
  $("mode-battle").setAttribute("aria-pressed", String(mode === "battle"));
  for (const id of ["chat-view", "chat-extras"]) {
    $(id).hidden = mode !== "chat";
  }
  for (const id of ["battle-view", "battle-extras"]) {
    $(id).hidden = mode !== "battle";
  }
  setStatus(mode === "chat" ? "Send a message to start chatting with a model." : "Send a message to start a battle.");
  refreshControls();
  $("message").focus();
}

// ---- chat with one routed model --------------------------------------------------------------------------

function newConversation() {
  state.chat = { id: null, closed: false, lastReply: null, feedbackKey: null };
  $("chat-log").replaceChildren();
  $("feedback-form").reset();
  $("feedback-form").hidden = true;
  setStatus("Send a message to start chatting with a model.");
  refreshControls();
}

async function sendChat(text) {
  const chat = state.chat;
  if (!chat.id || chat.closed) {
    newConversation();
    setStatus("Waiting for the model…");
    let started;
    try {
      started = await api("POST", "/beta/conversations", { user_id: state.me.user_id });
    } catch (error) {
      explain(error, "No model could be started");
      return false;
    }
    state.chat.id = started.conversation_id;
    state.chat.feedbackKey = randomKey();
  }
  const log = $("chat-log");
  const sent = addMessage(log, "You", text, "user");
  const reply = pendingReply(log, "Model");
  try {
    const answer = await api("POST", `/beta/conversations/${encodeURIComponent(state.chat.id)}/messages`, {
      message: text,
    });
    setMessageText(reply, answer.reply, "bot");
    state.chat.lastReply = reply;
    $("feedback-form").hidden = false;
    setStatus("Keep chatting, try the reply again, or rate the conversation below.");
    return true;
  } catch (error) {
    reply.remove();
    sent.classList.add("failed");
    if (error.status === 503) {
      state.chat.closed = true; // the model stopped answering: the next message starts a new conversation
    }
    explain(error, "The model did not answer");
    return false;
  }
}

async function regenerateChat() {
  const chat = state.chat;
  const reply = chat.lastReply;
  const previous = reply.querySelector(".text").textContent;
  setBusy(true);
  setMessageText(reply, "writing again…", "bot pending");
  try {
    const answer = await api("POST", `/beta/conversations/${encodeURIComponent(chat.id)}/regenerate`);
    setMessageText(reply, answer.reply, "bot");
    setStatus("Here is another reply.");
  } catch (error) {
    setMessageText(reply, previous, "bot");
    explain(error, "Could not get another reply");
  } finally {
    setBusy(false);
  }
}

async function sendFeedback(event) {
  event.preventDefault();
  const form = $("feedback-form");
  const thumbs = form.querySelector("input[name=thumbs]:checked");
  if (!thumbs) {
    setStatus("Choose thumbs up or thumbs down first.", true);
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    await api("POST", `/beta/conversations/${encodeURIComponent(state.chat.id)}/feedback`, {
      thumbs_up: thumbs.value === "up",
      text: $("feedback-text").value.trim(),
      idempotency_key: state.chat.feedbackKey,
    });
    state.chat.closed = true;
    form.hidden = true;
    refreshControls();
    setStatus("Thank you: your feedback was sent. Your next message starts a new conversation.");
  } catch (error) {
    explain(error, "Your feedback was not sent");
  } finally {
    submit.disabled = false;
  }
}

// ---- battles: two anonymous models side by side ---------------------------------------------------------

function newBattle() {
  state.battle = { id: null, voted: false, last: { a: null, b: null } };
  $("battle-log-a").replaceChildren();
  $("battle-log-b").replaceChildren();
  for (const side of ["a", "b"]) {
    $(`reveal-${side}`).hidden = true;
    $(`reveal-${side}`).textContent = "";
  }
  $("vote-result").hidden = true;
  setStatus("Send a message to start a battle.");
  refreshControls();
}

async function sendBattle(text) {
  if (!state.battle.id || state.battle.voted) {
    newBattle();
    setStatus("Waiting for the models…");
    let started;
    try {
      started = await api("POST", "/beta/battles", { user_id: state.me.user_id });
    } catch (error) {
      explain(error, "No battle could be started");
      return false;
    }
    state.battle.id = started.battle_id;
  }
  const sent = [addMessage($("battle-log-a"), "You", text, "user"), addMessage($("battle-log-b"), "You", text, "user")];
  const replyA = pendingReply($("battle-log-a"), "Model A");
  const replyB = pendingReply($("battle-log-b"), "Model B");
  try {
    const answer = await api("POST", `/beta/battles/${encodeURIComponent(state.battle.id)}/messages`, {
      message: text,
    });
    setMessageText(replyA, answer.reply_a, "bot");
    setMessageText(replyB, answer.reply_b, "bot");
    state.battle.last = { a: replyA, b: replyB };
    setStatus("Which reply is better? Vote below, or keep chatting first.");
    return true;
  } catch (error) {
    replyA.remove();
    replyB.remove();
    sent.forEach((item) => item.classList.add("failed"));
    if (error.status === 503) {
      state.battle.voted = true; // a side stopped answering: the next message starts a new battle
    }
    explain(error, "The models did not answer");
    return false;
  }
}

async function regenerateSide(side) {
  const reply = state.battle.last[side];
  const previous = reply.querySelector(".text").textContent;
  setBusy(true);
  setMessageText(reply, "writing again…", "bot pending");
  try {
    const answer = await api("POST", `/beta/battles/${encodeURIComponent(state.battle.id)}/regenerate`, { side });
    setMessageText(reply, answer.reply, "bot");
    setStatus(`Model ${side.toUpperCase()} answered again.`);
  } catch (error) {
    setMessageText(reply, previous, "bot");
    explain(error, `Model ${side.toUpperCase()} could not answer again`);
  } finally {
    setBusy(false);
  }
}

const EXCLUSIONS = {
  own_model: "you developed one of these models",
  repeat_pair: "you already have a counted vote on these two models",
};

async function vote(winner) {
  setBusy(true);
  try {
    const outcome = await api("POST", `/beta/battles/${encodeURIComponent(state.battle.id)}/vote`, { winner });
    state.battle.voted = true;
    for (const side of ["a", "b"]) {
      const model = outcome[`model_${side}`];
      const reveal = $(`reveal-${side}`);
      const named = model.model_name === model.submission_id ? model.model_name : `${model.model_name} (${model.submission_id})`;
      reveal.textContent = `Model ${side.toUpperCase()} was ${named}`;
      reveal.hidden = false;
    }
    const result = $("vote-result");
    result.textContent = outcome.counted
      ? "Thank you: your vote counts towards the leaderboard."
      : `Thank you: your vote is kept but not counted (${EXCLUSIONS[outcome.excluded_reason] || outcome.excluded_reason}).`;
    result.classList.toggle("excluded", !outcome.counted);
    result.hidden = false;
    setStatus("Your next message starts a new battle.");
  } catch (error) {
    explain(error, "Your vote was not recorded");
  } finally {
    setBusy(false);
  }
}

// ---- wiring ----------------------------------------------------------------------------------------------

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); // works on plain http too, unlike crypto.randomUUID
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function submitMessage(event) {
  event.preventDefault();
  const box = $("message");
  const text = box.value.trim();
  if (!text || state.busy) {
    return;
  }
  setBusy(true);
  setStatus(state.mode === "chat" ? "Waiting for the model…" : "Waiting for the models…");
  const sent = state.mode === "chat" ? await sendChat(text) : await sendBattle(text);
  if (sent) {
    box.value = "";
  }
  setBusy(false);
  box.focus();
}

function wire() {
  $("consent-box").addEventListener("change", (event) => {
    $("consent-button").disabled = !event.target.checked;
  });
  $("consent-button").addEventListener("click", giveConsent);
  $("mode-chat").addEventListener("click", () => setMode("chat"));
  $("mode-battle").addEventListener("click", () => setMode("battle"));
  $("composer").addEventListener("submit", submitMessage);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("chat-regenerate").addEventListener("click", regenerateChat);
  $("chat-new").addEventListener("click", newConversation);
  $("feedback-form").addEventListener("submit", sendFeedback);
  $("regenerate-a").addEventListener("click", () => regenerateSide("a"));
  $("regenerate-b").addEventListener("click", () => regenerateSide("b"));
  $("battle-new").addEventListener("click", newBattle);
  for (const button of $("vote").querySelectorAll("button")) {
    button.addEventListener("click", () => vote(button.dataset.winner));
  }
}

async function start() {
  wire();
  if (!token) {
    showProblem("This page needs an invite", "open the invite link the operator gave you");
    return;
  }
  try {
    state.me = await api("GET", "/beta/app/session");
  } catch (error) {
    showProblem("This invite does not work", error.message);
    return;
  }
  const until = new Date(state.me.expires_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  $("who").textContent = `Invited as ${state.me.name}, until ${until}`;
  if (state.me.consented) {
    showApp();
  } else {
    showConsent();
  }
}

start();
