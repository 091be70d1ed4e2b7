package proxy

// SaveLinksForTest saves s's links as an API write does when it ends.
func SaveLinksForTest(s *Server) error { return s.saveLinks() }
