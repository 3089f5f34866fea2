/* nbdkit-remap: ending the wait of clients that nbdkit's listening
 * sockets hold when the filter refuses to start after nbdkit forked.
 */
#ifndef REMAP_LISTENERS_H
#define REMAP_LISTENERS_H

/* Under nbdkit --run, the command's nbdkit process (our parent, which
 * runs the command and waits for it) keeps the listening sockets open:
 * a client that connects after we stopped would wait forever for a
 * handshake.  If our parent is that nbdkit, shut down every listening
 * socket of this process (the control socket too: nobody will answer
 * it), so that new clients are refused, and close the connections
 * queued on them,
 * so that those clients see the end of the connection.  Otherwise the
 * sockets end with this process and nothing is done.
 */
extern void remap_stop_listening (void);

/* Called in .get_ready, before nbdkit forks for --run: notes the
 * process that will be our parent then.
 */
extern void remap_listeners_note_server (void);

#endif /* REMAP_LISTENERS_H */
