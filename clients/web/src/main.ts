// The web chat: sign in, then the chat view. Built on @parley/client; the
// server's session cookie authenticates everything, so no token is kept.
import { ParleyClient, ParleyError, type User } from "@parley/client";

import { Chat } from "./chat.js";
import { byId, show } from "./dom.js";

const client = new ParleyClient();
let chat: Chat | undefined;

function explain(e: unknown, action: "login" | "register"): string {
  if (!(e instanceof ParleyError)) return "Something went wrong. Please try again.";
  if (e.status === 0) return "Cannot reach the server. Check the connection and try again.";
  if (e.status === 401) return "Wrong username or password.";
  if (e.status === 409 && action === "register") return "That username is taken.";
  if (e.status === 429 || e.status === 503) {
    const s = Math.ceil((e.retryAfterMs ?? 1000) / 1000);
    return `Too many attempts just now. Try again in ${s} s.`;
  }
  if (e.fieldErrors.length > 0) return e.fieldErrors.map((f) => `${f.field.replace("_", " ")} ${f.message}`).join("; ");
  return e.problem?.detail ?? e.message;
}

function showAuth(message = ""): void {
  chat?.stop();
  chat = undefined;
  show(byId("chat-view"), false);
  show(byId("account"), false);
  show(byId("auth-view"), true);
  byId("auth-error").textContent = message;
  byId("username").focus();
}

function showChat(me: User): void {
  show(byId("auth-view"), false);
  show(byId("account"), true);
  show(byId("chat-view"), true);
  byId("whoami").textContent = `Signed in as ${me.display_name} (@${me.username})`;
  (byId<HTMLInputElement>("password")).value = "";
  chat = new Chat(client, me, () => showAuth("Your session ended. Please sign in again."));
  chat.start();
  byId("search").focus();
}

byId<HTMLFormElement>("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const submitter = (event as SubmitEvent).submitter as HTMLButtonElement | null;
  const action = submitter?.value === "register" ? "register" : "login";
  const username = byId<HTMLInputElement>("username").value.trim();
  const password = byId<HTMLInputElement>("password").value;
  const displayName = byId<HTMLInputElement>("display-name").value.trim();
  const error = byId("auth-error");
  error.textContent = "";
  const buttons = [...byId("auth-form").querySelectorAll("button")];
  buttons.forEach((b) => (b.disabled = true));
  try {
    const session =
      action === "register"
        ? await client.register({ username, password, ...(displayName ? { displayName } : {}) })
        : await client.login(username, password);
    showChat(session.user);
  } catch (e) {
    error.textContent = explain(e, action);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
});

byId("logout").addEventListener("click", async () => {
  chat?.stop();
  chat = undefined;
  await client.logout().catch(() => undefined);
  showAuth("You are signed out.");
});

async function boot(): Promise<void> {
  try {
    showChat(await client.me());
  } catch (e) {
    showAuth(e instanceof ParleyError && e.status === 401 ? "" : explain(e, "login"));
  }
}

void boot();
