/** The public view of a user. */
export interface User {
  id: string;
  username: string;
  display_name: string;
  created_at: string;
}

/** A session: the user and the token the server also set as a cookie. */
export interface Session {
  user: User;
  token: string;
}

/** A message as readers see it. */
export interface Message {
  id: string;
  /** Opaque; the same for both participants. */
  conversation_id: string;
  from: string;
  to: string;
  body: string;
  sent_at: string;
  /** When a device of the recipient acknowledged it. */
  delivered_at?: string | null;
  /** When the recipient's read marker reached it. */
  read_at?: string | null;
}

/** One entry of the inbox. */
export interface Conversation {
  conversation_id: string;
  peer: User;
  last_message: Message;
  unread_count: number;
}

/** A page of history, newest first. */
export interface HistoryPage {
  messages: Message[];
  /** Pass as `before` for the next (older) page; `null` on the last page. */
  next_cursor: string | null;
}

export interface FieldError {
  field: string;
  message: string;
}

/** RFC 9457 problem details: the body of every error answer. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: FieldError[];
}

/** First frame on a socket: `seq` is where it goes on from. */
export interface ReadyFrame {
  type: "ready";
  user_id: string;
  seq: string;
}

/** A message to the user, or from the user on another device. */
export interface MessageFrame {
  type: "message";
  message: Message;
  seq: string;
}

/** To the sender: a device of the recipient received the message. */
export interface DeliveredFrame {
  type: "delivered";
  conversation_id: string;
  message_id: string;
  at: string;
  seq: string;
}

/** A read marker moved: `by` read the conversation up to `up_to`. */
export interface ReadFrame {
  type: "read";
  conversation_id: string;
  up_to: string;
  by: string;
  at: string;
  seq: string;
}

/** The backlog after `since` is complete; live frames follow. */
export interface SyncedFrame {
  type: "synced";
  seq: string;
}

/** A frame the server could not use; the socket stays open. */
export interface ErrorFrame {
  type: "error";
  detail: string;
}

export interface PongFrame {
  type: "pong";
}

export type ServerFrame =
  | ReadyFrame
  | MessageFrame
  | DeliveredFrame
  | ReadFrame
  | SyncedFrame
  | ErrorFrame
  | PongFrame;

export type ClientFrame =
  | { type: "auth"; token: string; since?: string }
  | { type: "ack"; message_id: string }
  | { type: "ping" };
