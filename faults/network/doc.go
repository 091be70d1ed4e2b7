// Package network puts faults on the TCP links of a target through the HTTP
// API of a toxiproxy server: the client of that API ([Client]), the names
// mailchaos gives its toxics ([ToxicName]), applying a set of toxics for a
// request and undoing them ([Apply], [Remove], [RemoveOwned]), diverting a
// link, and [LinkInjector], the injector of every fault that is a set of
// toxics.
//
// It is the client side only: the toxiproxy server, with mailchaos' own
// toxic types, lives in targets/proxy, which a fault never imports. Every
// control call takes a context and has a deadline. Toxics that mailchaos
// adds are named after their owner, injection and expiry time, so the
// server's reaper can remove them once their time-to-live has passed even
// if the process that added them is gone, and a later run can find them.
package network
