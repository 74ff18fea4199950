package main

// Licences. vcsim 0.24 answers QueryAssignedLicenses with its one evaluation licence for every
// entity and has no UpdateAssignedLicense. The model adds the free ESXi licence (whose API is
// read-only on a real host) to the LicenseManager, and lets a test assign any licence the
// LicenseManager holds to a host with UpdateAssignedLicense, as on vCenter.

import (
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// freeLicense is the licence of the free "vSphere Hypervisor" edition.
var freeLicense = types.LicenseManagerLicenseInfo{
	LicenseKey: "00000-00000-00000-00000-0FREE",
	EditionKey: "esxBasic",
	Name:       "VMware vSphere 7 Hypervisor",
	Total:      0,
	CostUnit:   "cpuPackage",
}

type licenseAssignmentManager struct {
	*simulator.LicenseAssignmentManager
	lm       *simulator.LicenseManager
	mu       sync.Mutex
	assigned map[string]types.LicenseManagerLicenseInfo
}

func installLicences(content types.ServiceContent) {
	lm := simulator.Map.Get(*content.LicenseManager).(*simulator.LicenseManager)
	lm.Licenses = append(lm.Licenses, freeLicense)
	orig := simulator.Map.Get(*lm.LicenseAssignmentManager).(*simulator.LicenseAssignmentManager)
	simulator.Map.Put(&licenseAssignmentManager{LicenseAssignmentManager: orig, lm: lm, assigned: map[string]types.LicenseManagerLicenseInfo{}})
}

func (m *licenseAssignmentManager) QueryAssignedLicenses(req *types.QueryAssignedLicenses) soap.HasFault {
	body := m.LicenseAssignmentManager.QueryAssignedLicenses(req).(*methods.QueryAssignedLicensesBody)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range body.Res.Returnval {
		a := &body.Res.Returnval[i]
		if l, ok := m.assigned[a.EntityId]; ok {
			a.AssignedLicense = l
		}
	}
	return body
}

func (m *licenseAssignmentManager) UpdateAssignedLicense(req *types.UpdateAssignedLicense) soap.HasFault {
	body := &methods.UpdateAssignedLicenseBody{}
	if simulator.Map.Get(types.ManagedObjectReference{Type: "HostSystem", Value: req.Entity}) == nil {
		body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "entity"})
		return body
	}
	for _, l := range m.lm.Licenses {
		if l.LicenseKey == req.LicenseKey {
			m.mu.Lock()
			m.assigned[req.Entity] = l
			m.mu.Unlock()
			body.Res = &types.UpdateAssignedLicenseResponse{Returnval: l}
			return body
		}
	}
	body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "licenseKey"})
	return body
}
