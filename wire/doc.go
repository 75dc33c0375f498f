// Package wire is the chat protocol's vocabulary, version 1: the frames a
// server and a client exchange on the socket, the JSON objects of the HTTP
// routes, the error codes both share, the socket's close codes, and the
// strict decoding of client frames. The server and Go clients import it;
// it imports nothing of the project.
//
// Sequenced server frames are encoded without "seq" and stored so; WithSeq
// splices the seq in when a frame is sent, so that each is encoded once.
package wire
